"""Enumerated settings of the config schema (medtune.config): OmegaConf checks them when Hydra composes
(`adapter.method=lorx` fails there, naming the allowed values). StrEnum members compare, hash and print as their
plain strings. Torch-free, like the schema.
"""

from __future__ import annotations

from enum import StrEnum


class Arch(StrEnum):
    gpt_neox = "gpt_neox"
    llama = "llama"
    qwen3 = "qwen3"


class TinyChatFormat(StrEnum):
    """The chat formats medtune writes into a tiny tokenizer (medtune/assets/chat_templates/<name>.jinja)."""

    qwen3 = "qwen3"  # ChatML: <|im_start|>role ... <|im_end|>
    llama3 = "llama3"  # <|start_header_id|>role<|end_header_id|> ... <|eot_id|>


class Dtype(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class AdapterMethod(StrEnum):
    """What trains; the LoRA variants are peft's (README "Tuning methods" names each one's peft reference)."""

    lora = "lora"
    dora = "dora"
    rslora = "rslora"  # LoRA scaled by alpha/sqrt(r) instead of alpha/r (LoraConfig use_rslora)
    pissa = "pissa"  # LoRA from the principal singular vectors; the base keeps the residual (init_lora_weights)
    olora = "olora"  # LoRA from a QR decomposition of the weights; the base keeps the residual
    loftq = "loftq"  # LoRA initialised on the 4-bit base's quantization error (replace_lora_weights_loftq)
    loraplus = "loraplus"  # LoRA trained with B's learning rate a ratio above A's (create_loraplus_optimizer)
    vera = "vera"  # frozen random projections shared by all layers, trained scaling vectors (VeraConfig)
    eva = "eva"  # LoRA from the SVD of the layers' inputs on the training data, ranks redistributed (EvaConfig)
    full = "full"
    none = "none"  # evaluate the untuned base


# The methods with a rank, dropout and targets (all but VeRA with an alpha too): each composes as a LoraAdapterConfig.
LORA_METHODS = tuple(m for m in AdapterMethod if m not in (AdapterMethod.full, AdapterMethod.none))


class QuantMode(StrEnum):
    none = "none"
    nf4 = "nf4"  # 4-bit NormalFloat (QLoRA)
    int8 = "int8"  # LLM.int8()


class DatasetSource(StrEnum):
    demo = "demo"
    jsonl = "jsonl"
    hf = "hf"
    text = "text"  # raw text, stage=pretrain


class PackingStrategy(StrEnum):
    """How a run lays out a batch (medtune.packing, which also holds the rule choosing one)."""

    padding = "padding"  # each example its own row, padded to the batch's longest
    varlen = "varlen"  # the batch in one unpadded row (flash kernels)
    bucketed = "bucketed"  # the batch in one row padded to a bucket length (flex_attention)
    bins = "bins"  # best-fit-decreasing into rows no longer than the batch's longest example (sdpa, eager)


class Stage(StrEnum):
    sft = "sft"
    pretrain = "pretrain"


class MixedPrecision(StrEnum):
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


class EvalSource(StrEnum):
    demo = "demo"
    igakuqa = "igakuqa"
    jjsimqa = "jjsimqa"
    jsonl = "jsonl"
    jmle = "jmle"
    hf = "hf"


class EvalMode(StrEnum):
    generate = "generate"
    loglik = "loglik"


class LoglikConvention(StrEnum):
    """How loglik mode scores a choice (README "Modes"): medtune's, or lm-evaluation-harness 0.4's."""

    medtune = "medtune"  # + EOS log-probability (jmedlora prompt); a k-answer question: top k == gold set
    lm_eval = "lm_eval"  # no EOS; the context's trailing whitespace moves into each continuation; top 1 in gold


class EvalPrompt(StrEnum):
    jmedlora = "jmedlora"
    igakuqa = "igakuqa"


class AnswerFormat(StrEnum):
    letter = "letter"  # "a", "A", ["a", "c"]
    index0 = "index0"  # 0 = first choice
    index1 = "index1"  # 1 = first choice


class WandbMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class ModelArtifact(StrEnum):
    auto = "auto"
    copy = "copy"
    reference = "reference"
    off = "off"


class TokenLimitParam(StrEnum):
    """The name a chat-completions request gives the reply's token limit (medtune.api_client.chat_body)."""

    auto = "auto"  # max_completion_tokens at api.openai.com, max_tokens elsewhere
    max_completion_tokens = "max_completion_tokens"  # the OpenAI API (its reasoning models refuse max_tokens)
    max_tokens = "max_tokens"  # vLLM, llama.cpp, Ollama and other OpenAI-compatible servers
