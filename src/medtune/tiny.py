"""Offline stand-ins for hub models: the real architectures at toy size, built on first use.

No machine here reaches the model hub, so `base_model=tiny_gptneox|tiny_llama|tiny_qwen3|tiny_llama3` builds a
2-layer model of the real class (GPT-NeoX like OpenCALM, Llama like Llama 2/3, Qwen3) with a byte-level BPE
tokenizer trained on the bundled medical corpus, pretrains it briefly on that corpus (a miniature of what made
MedCALM, so LoRA has representations to adapt), and saves it with `save_pretrained`. A tiny instruct stand-in
(`tiny_chat_format`) also gets its family's turn markers as special tokens and a chat template written here
(medtune/assets/chat_templates). Every later load goes through the same `from_pretrained` call as a hub id. Builds
are atomic and locked, so parallel multirun jobs share one build.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from medtune import demo_assets
from medtune.config import BaseModelConfig
from medtune.console import bar
from medtune.errors import ConfigError
from medtune.prompts import PROMPT_TEMPLATES
from medtune.tiny_paths import (
    RECIPE_VERSION,
    TINY_MARKER,
    ensure_tiny_model,
    is_current_build,
    tiny_build_may_replace,
)

log = logging.getLogger(__name__)

# RECIPE_VERSION (medtune.tiny_paths): bump it when the recipe below changes.
VOCAB_SIZE = 1500
TEMPLATE_WEIGHT = 20  # template lines repeated so their fixed phrases become single tokens
SPECIAL_TOKENS = {
    "eos_token": "<|endoftext|>",
    "bos_token": "<|endoftext|>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
}
SHAPE = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512}
QWEN3_SHAPE = {**SHAPE, "num_key_value_heads": 2, "head_dim": 32}  # grouped-query attention, as every Qwen3 size
# Each family's special tokens as its instruct tokenizer names them, the rest stay SPECIAL_TOKENS' (Qwen3's bos id is
# <|endoftext|>'s too). The eos is the end-of-turn token, as the instruct models ship it, so generation stops there.
CHAT_SPECIAL_TOKENS: dict[str, dict[str, Any]] = {
    "qwen3": {"eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]},
    "llama3": {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"],
    },
}
CHAT_ROLES = ("system", "user", "assistant")  # in the tokenizer's training text, so a role name is one token
MAX_POSITIONS = 1024
PRETRAIN_STEPS = 300  # causal-LM steps on the corpus: ~20 s on 2 CPU cores
PRETRAIN_BLOCK = 128  # tokens per training block
PRETRAIN_BATCH = 16
PRETRAIN_LR = 3e-3


def build_tiny_model(base: BaseModelConfig, cache_dir: str | Path) -> Path:
    """ensure_tiny_model's build (medtune.tiny_paths): atomic and locked, so parallel multirun jobs share one."""
    path = Path(base.path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if is_current_build(path):
            return path
        log.info("building tiny %s model at %s (first use)", base.arch, path)
        staging = path.with_name(f".{path.name}.building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        if base.continual_pretraining_of:
            _build_by_continual_pretraining(base, Path(cache_dir), staging)
        else:
            _build_from_scratch(base.arch, staging, base.tiny_chat_format)
        marker = {"recipe_version": RECIPE_VERSION, "arch": base.arch, "chat_format": base.tiny_chat_format}
        (staging / TINY_MARKER).write_text(json.dumps(marker))
        _remove_own_build(path)
        os.replace(staging, path)
    return path


def tiny_base_model(group: str, cache_dir: str | Path) -> BaseModelConfig:
    """A tiny base_model group as train.py composes it, built if missing (for benchmarks and tests)."""
    from medtune.config import compose_train, to_train_config

    base = to_train_config(compose_train(f"base_model={group}", f"cache_dir={cache_dir}")).base_model
    ensure_tiny_model(base, cache_dir)
    return base


def _build_from_scratch(arch: str, staging: Path, chat_format: str | None = None) -> None:
    tokenizer = train_tokenizer(demo_assets.corpus_path(), chat_format)
    model = build_model(arch, tokenizer)
    pretrain_on_corpus(model, tokenizer, demo_assets.corpus_path())
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)


def _build_by_continual_pretraining(base: BaseModelConfig, cache_dir: Path, staging: Path) -> None:
    """A tiny MedCALM: `train.py experiment=demo_pretrain base_model=<source>` through the normal training path
    (tracked in W&B), its run dir beside the model it makes."""
    from medtune.config import compose_train, to_train_config
    from medtune.training import run

    config = to_train_config(
        compose_train(
            "experiment=demo_pretrain", f"base_model={base.continual_pretraining_of}", f"cache_dir={cache_dir}"
        )
    )
    ensure_tiny_model(config.base_model, cache_dir)
    run_dir = Path(base.path).expanduser().with_name(f"{Path(base.path).name}-pretrain-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    run(config, run_dir)
    shutil.copytree(run_dir / "model", staging)


def _remove_own_build(path: Path) -> None:
    """Clear the way for a new build: only an older build of ours (or an empty folder) is ever removed."""
    if not tiny_build_may_replace(path):
        raise ConfigError(
            f"{path} holds files medtune did not create (no {TINY_MARKER}); no tiny model is built there."
        )
    if path.exists():  # an empty folder, or an older build of ours
        shutil.rmtree(path)


def train_tokenizer(corpus: Path, chat_format: str | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE (no unknown characters, so any Japanese text encodes) trained on the corpus.

    The prompt templates are part of the training text, as a real tokenizer's corpus covers the instruction
    format; a small vocabulary keeps tokens short, so they generalise beyond the sentences seen. With a chat format
    the role names join the training text and the family's markers are added (`add_chat_format`).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=sorted(set(SPECIAL_TOKENS.values())),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    templates = [
        text for template in PROMPT_TEMPLATES.values() for text in (template.with_input, template.without_input)
    ]
    lines = corpus.read_text(encoding="utf-8").splitlines()
    roles = [f"{role}\n" for role in CHAT_ROLES] if chat_format else []
    tokenizer.train_from_iterator(lines + (templates + roles) * TEMPLATE_WEIGHT, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=MAX_POSITIONS, **SPECIAL_TOKENS)
    if chat_format:
        add_chat_format(fast, chat_format)
    return fast


def add_chat_format(tokenizer: PreTrainedTokenizerFast, chat_format: str) -> None:
    """The family's turn markers as special tokens (one id each, never split from text) and its chat template."""
    tokenizer.add_special_tokens(CHAT_SPECIAL_TOKENS[chat_format])
    tokenizer.chat_template = demo_assets.asset_path(f"chat_templates/{chat_format}.jinja").read_text(encoding="utf-8")


def build_model(arch: str, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A randomly initialised model of the real class, seeded so every build is identical."""
    torch.manual_seed(0)
    common = {"vocab_size": len(tokenizer), "max_position_embeddings": MAX_POSITIONS, **_special_ids(tokenizer)}
    if arch == "gpt_neox":
        return GPTNeoXForCausalLM(GPTNeoXConfig(**SHAPE, **common))
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**SHAPE, **common))
    if arch == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(**QWEN3_SHAPE, **common))
    raise ValueError(f"no tiny model for architecture {arch!r}")


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    """The model config's token ids are the tokenizer's (generation stops at its eos)."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def pretrain_on_corpus(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, corpus: Path) -> None:
    """A few hundred causal-LM steps on the corpus, so the tiny base already models medical Japanese."""
    # verbose=False: the corpus is one token stream, cut into PRETRAIN_BLOCK blocks below, never a model input as it
    # is, so transformers' "longer than the maximum sequence length" warning does not apply.
    ids = tokenizer(corpus.read_text(encoding="utf-8"), verbose=False)["input_ids"]
    n_blocks = len(ids) // PRETRAIN_BLOCK
    blocks = torch.tensor(ids[: n_blocks * PRETRAIN_BLOCK]).view(n_blocks, PRETRAIN_BLOCK)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=PRETRAIN_LR, total_steps=PRETRAIN_STEPS)
    model.train()
    with bar(PRETRAIN_STEPS, f"building tiny {model.config.model_type}", "step") as progress:
        for _ in range(PRETRAIN_STEPS):
            batch = blocks[torch.randint(n_blocks, (PRETRAIN_BATCH,), generator=generator)]
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            progress.update()
    model.eval()
    log.info("tiny pretraining done: final loss %.3f", loss.item())
