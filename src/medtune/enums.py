"""Enumerated settings of the config schema (medtune.config): OmegaConf checks them when Hydra composes
(`adapter.method=lorx` fails there, naming the allowed values). StrEnum members compare, hash and print as their
plain strings. Torch-free, like the schema.
"""

from __future__ import annotations

from enum import StrEnum


class Arch(StrEnum):
    gpt_neox = "gpt_neox"
    llama = "llama"


class Dtype(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class AdapterMethod(StrEnum):
    lora = "lora"
    dora = "dora"
    full = "full"
    none = "none"  # evaluate the untuned base


LORA_METHODS = (AdapterMethod.lora, AdapterMethod.dora)  # the methods with a rank, alpha, dropout and targets


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
