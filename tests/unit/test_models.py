"""Every adapter × quantization × architecture builds from config and actually learns."""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from peft import PeftModel

from medtune.config import (
    BaseModelConfig,
    BitsAndBytesQuantConfig,
    LoraAdapterConfig,
    QuantizationConfig,
    to_train_config,
)
from medtune.errors import ConfigError
from medtune.models import attach_adapter, count_parameters, load_base_model

from helpers import CONF

TINY = {"gpt_neox": "tiny_gptneox", "llama": "tiny_llama", "qwen3": "tiny_qwen3"}
# The paper's "all linear layers" (QLoRA; qlora.py find_all_linear_names: every linear layer but the output layer),
# which peft's `all-linear` must wrap and no more.
ALL_LINEAR_LAYERS = {
    "gpt_neox": {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"},
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen3": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
}


def loss_after_steps(model, steps: int = 8, lr: float = 1e-2) -> tuple[float, float]:
    """(first, last) loss on one repeated batch: a model that can learn must fit it."""
    torch.manual_seed(0)
    batch = torch.randint(5, 800, (2, 24))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.mark.parametrize(
    ("name", "method", "quant"),
    [
        *[(name, *pair) for name in ("tiny_gptneox", "tiny_llama") for pair in
          [("lora", "none"), ("lora", "nf4"), ("lora", "int8"), ("dora", "none"), ("full", "none")]],
        ("tiny_qwen3", "lora", "none"),
        ("tiny_qwen3", "lora", "nf4"),
    ],
)  # fmt: skip
def test_adapter_trains_on_every_architecture(tiny_models, tiny_chat_models, name, method, quant):
    base = (tiny_models | tiny_chat_models)[name]
    model, _ = load_base_model(base, BitsAndBytesQuantConfig(mode=quant))
    adapter = LoraAdapterConfig(method=method, r=8, alpha=16, dropout=0.0, target_modules=base.lora_targets)
    model = attach_adapter(model, adapter, quantized=quant != "none")
    if quant == "nf4":  # real bitsandbytes 4-bit layers under the adapter
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    if quant == "int8":
        assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    if method != "full":
        assert isinstance(model, PeftModel) and trainable < 0.1 * total
    first, last = loss_after_steps(model)
    assert torch.isfinite(torch.tensor(last)) and last < first


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "base_model").glob("*.yaml")))
def test_every_base_model_targets_resolve_on_a_tiny_model_of_its_architecture(
    tiny_models, tiny_chat_models, compose_config, option
):
    overrides = [f"base_model={option}"] + (["base_model.path=/x"] if option == "medcalm_7b" else [])
    tc = to_train_config(compose_config("train", *overrides))
    tiny = (tiny_models | tiny_chat_models)[TINY[tc.base_model.arch]]
    all_linear = ALL_LINEAR_LAYERS[tc.base_model.arch]
    for targets, expected in (
        (tc.base_model.lora_targets, set(tc.base_model.lora_targets)),
        (["all-linear"], all_linear),
    ):
        model, _ = load_base_model(tiny, QuantizationConfig())
        adapter = LoraAdapterConfig(method="lora", r=4, alpha=8, dropout=0.0, target_modules=targets)
        model = attach_adapter(model, adapter, quantized=False)
        wrapped = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if hasattr(m, "lora_A")}
        assert wrapped == expected


def test_unloadable_base_model_is_a_clear_config_error(tmp_path):
    base = BaseModelConfig(
        name="x",
        path=str(tmp_path / "no-such-model"),
        arch="llama",
        lora_targets=["q_proj"],
    )
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_base_model(base, QuantizationConfig())


@pytest.mark.parametrize("quant", ["none", "nf4"])
def test_lora_learns_through_the_trainers_non_reentrant_checkpointing(tiny_models, compose_config, tmp_path, quant):
    """The frozen base gets no input-grad hook: non-reentrant checkpoints still carry gradients to LoRA."""
    from transformers import Trainer

    from medtune.data import build_collator
    from medtune.training_args import training_arguments

    tc = to_train_config(
        compose_config(
            "train",
            "base_model=tiny_llama",
            f"quantization={quant}",
            "trainer.gradient_checkpointing=true",
            "trainer.max_steps=2",
        )
    )
    base = tiny_models["tiny_llama"]
    model, tokenizer = load_base_model(base, tc.quantization)
    model = attach_adapter(model, tc.adapter, quantized=quant != "none")
    rows = [{"input_ids": list(range(5, 30)), "labels": list(range(5, 30))}] * 4
    args = training_arguments(tc, tmp_path, evaluates=False)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=build_collator(tokenizer)).train()
    assert any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())  # it was on
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: only gradients move it
