"""Composition and cross-group validation: mistakes fail before any weights load."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from medtune.config import TUNING_METHODS, to_plain_dict, to_train_config, tuning_method
from medtune.errors import ConfigError
from medtune.tracking import resolve_mode

CONF = Path(__file__).resolve().parents[2] / "conf"
BASE_MODELS = sorted(p.stem for p in (CONF / "base_model").glob("*.yaml"))


def test_default_config_is_the_offline_demo(compose_config):
    tc = to_train_config(compose_config("train"))
    assert (tc.base_model.name, tc.adapter.method, tc.quantization.mode) == ("tiny_gptneox", "lora", "none")
    assert tc.dataset.source == "demo" and tc.wandb.mode is None  # unset: $WANDB_MODE, else offline
    assert resolve_mode(tc.wandb.mode, env={}) == "offline"
    # The demo adapts every linear layer of the 2-layer model; the paper presets use attention only.
    assert (tc.experiment_name, tc.adapter.target_modules, tc.adapter.r) == ("demo", ["all-linear"], 32)


@pytest.mark.parametrize("base_model", BASE_MODELS)
def test_every_base_model_names_lora_targets_for_its_architecture(compose_config, base_model):
    overrides = [f"base_model={base_model}", "~experiment"]  # the lora group alone, without the demo's values
    if base_model == "medcalm_7b":
        overrides.append("base_model.path=/models/medcalm")
    tc = to_train_config(compose_config("train", *overrides))
    assert tc.adapter.target_modules == tc.base_model.lora_targets != []
    assert (tc.adapter.r, tc.adapter.alpha, tc.adapter.dropout) == (8, 32, 0.05)  # the schema's: paper Table 1


@pytest.mark.parametrize(
    ("overrides", "adapter", "quantization"),
    [
        (["adapter=full"], {"method": "full"}, {"mode": "none"}),
        (["tuning=untuned"], {"method": "none"}, {"mode": "none"}),
        (["tuning=qlora"], {"method": "lora", "r": 32, "alpha": 64, "dropout": 0.05, "target_modules": ["all-linear"],
                            "loraplus_lr_ratio": None},
         {"mode": "nf4", "double_quant": True, "compute_dtype": "float32"}),
    ],
)  # fmt: skip
def test_a_runs_resolved_config_holds_only_what_its_method_uses(compose_config, overrides, adapter, quantization):
    """The demo's LoRA values compose with adapter=full, then drop out: no rank on a full or untuned run."""
    plain = to_plain_dict(to_train_config(compose_config("train", *overrides)))
    assert (plain["adapter"], plain["quantization"]) == (adapter, quantization)


def test_the_tuning_group_the_run_names_and_the_report_read_one_table(compose_config):
    for name, (adapter, quantization) in TUNING_METHODS.items():
        tc = to_train_config(compose_config("train", f"tuning={name}"))
        assert (tc.adapter.method, tc.quantization.mode) == (adapter, quantization)
        assert tuning_method(tc.adapter.method, tc.quantization.mode) == name
    assert tuning_method("lora", "int8") == "lora-int8"  # a pair outside the table keeps both parts


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("adapter.method=qlora", "[lora, dora, rslora, pissa, olora, loftq, loraplus, vera, eva, full, none]"),
        ("quantization.mode=nf8", "[none, nf4, int8]"),
        ("eval.mode=score", "[generate, loglik]"),
        ("wandb.mode=cloud", "[offline, online, disabled]"),
        ("trainer.mixed_precision=fp8", "[no, bf16, fp16]"),
    ],
)
def test_an_enumerated_value_fails_at_composition_naming_the_allowed_ones(compose_config, override, allowed):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("train", override)
    assert allowed in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["adapter=full", "quantization=nf4"], "adapter=full cannot train quantization=nf4"),
        (["adapter=full", "quantization=int8"], "quantized weights are frozen"),
        (["adapter.target_modules=[]"], "needs adapter.target_modules"),
        (["stage=pretrain"], "stage=pretrain writes a full checkpoint"),
        (["dataset=jsonl", "dataset.path=null"], "dataset=jsonl needs dataset.path"),
        (["trainer.max_steps=0"], "trainer.max_steps must be positive"),
        (["eval=igakuqa"], "eval=igakuqa needs eval.path=<directory or file>"),
        (["dataset.prompt_template=alpaca"], "dataset.prompt_template='alpaca' is not one of alpaca_ja, plain, chat"),
        (["base_model.attn_implementation=flash"], "base_model.attn_implementation='flash' is not one of"),
        (["trainer.max_grad_norm=-1"], r"trainer.max_grad_norm=-1.0 is out of range: allowed >= 0"),
        (["base_model=tiny_gptneox", "trainer.use_liger_kernel=true"], "use_liger_kernel=true"),
    ],
)
def test_invalid_combinations_fail_with_a_sentence(compose_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        to_train_config(compose_config("train", *overrides))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.learning_rate=-1e-3", "trainer.learning_rate=-0.001 is out of range: allowed > 0"),
        ("trainer.batch_size=0", "trainer.batch_size=0 is out of range: allowed >= 1"),
        ("adapter.r=0", "adapter.r=0 is out of range: allowed >= 1"),
        ("dataset.max_input_tokens=-1", "dataset.max_input_tokens=-1 is out of range: allowed >= 1"),
        ("eval.limit=-5", "eval.limit=-5 is out of range: allowed >= 1"),
        ("adapter.dropout=1.0", r"adapter.dropout=1.0 is out of range: allowed \[0, 1\)"),
        ("trainer.warmup_ratio=1.5", r"trainer.warmup_ratio=1.5 is out of range: allowed \[0, 1\]"),
    ],
)
def test_a_meaningless_number_fails_naming_key_value_and_range(compose_config, override, message):
    with pytest.raises(ConfigError, match=message):
        to_train_config(compose_config("train", override))


def test_typo_in_a_key_fails_at_composition(compose_config):
    with pytest.raises(ConfigCompositionException):
        compose_config("train", "trainer.max_stepz=3")


def test_wrong_type_fails_at_composition(compose_config):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config("train", "trainer.max_steps=many")


@pytest.mark.parametrize(
    ("knob", "probe", "package"),
    [
        ("base_model.attn_implementation=flash_attention_2", "is_flash_attn_2_available", "flash-attn"),
        ("base_model.attn_implementation=flash_attention_3", "is_flash_attn_3_available", "flash-attn-3"),
        ("base_model.attn_implementation=kernels-community/flash-attn", "is_kernels_available", "pip install kernels"),
        ("trainer.use_liger_kernel=true", "is_liger_kernel_available", "pip install liger-kernel"),
        ("trainer.optim=paged_adamw_32bit", "is_bitsandbytes_available", "pip install bitsandbytes"),
    ],
)
def test_a_knob_whose_package_is_missing_names_the_package(compose_config, monkeypatch, knob, probe, package):
    from transformers.utils import import_utils

    monkeypatch.setattr(import_utils, probe, lambda: False)
    with pytest.raises(ConfigError, match=package):
        to_train_config(compose_config("train", "base_model=tiny_llama", "base_model.dtype=bfloat16", knob))


def test_flash_attention_needs_half_precision_weights(compose_config, monkeypatch):
    from transformers.utils import import_utils

    monkeypatch.setattr(import_utils, "is_flash_attn_2_available", lambda: True)
    with pytest.raises(ConfigError, match="bfloat16/float16 only"):
        to_train_config(compose_config("train", "base_model.attn_implementation=flash_attention_2"))  # tiny: float32
    tc = to_train_config(
        compose_config("train", "base_model.attn_implementation=flash_attention_2", "base_model.dtype=bfloat16")
    )
    assert tc.base_model.attn_implementation == "flash_attention_2"


def test_fsdp_activation_checkpointing_and_the_trainers_exclude_each_other(compose_config, monkeypatch):
    # accelerate launch sets this from conf/accelerate/fsdp.yaml's fsdp_activation_checkpointing
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    with pytest.raises(ConfigError, match=r"set trainer\.gradient_checkpointing=false"):
        to_train_config(compose_config("train", "trainer.gradient_checkpointing=true"))
    assert not to_train_config(compose_config("train")).trainer.gradient_checkpointing
