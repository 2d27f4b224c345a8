"""Composition and cross-group validation: mistakes fail before any weights load."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from medtune.config import to_train_config
from medtune.errors import ConfigError
from medtune.tracking import resolve_mode

CONF = Path(__file__).resolve().parents[2] / "conf"
BASE_MODELS = sorted(p.stem for p in (CONF / "base_model").glob("*.yaml"))


def test_default_config_is_the_offline_demo(compose_train):
    tc = to_train_config(compose_train())
    assert (tc.base_model.name, tc.adapter.method, tc.quantization.mode) == ("tiny_gptneox", "lora", "none")
    assert tc.dataset.source == "demo" and tc.wandb.mode is None  # unset: $WANDB_MODE, else offline
    assert resolve_mode(tc.wandb.mode, env={}) == "offline"
    # The demo adapts every linear layer of the 2-layer model; the paper presets use attention only.
    assert tc.adapter.target_modules == ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]


@pytest.mark.parametrize("base_model", BASE_MODELS)
def test_every_base_model_names_lora_targets_for_its_architecture(compose_train, base_model):
    overrides = [f"base_model={base_model}"]
    if base_model == "medcalm_7b":
        overrides.append("base_model.path=/models/medcalm")
    tc = to_train_config(compose_train(*overrides))
    assert tc.adapter.target_modules == tc.base_model.all_linear_targets
    assert set(tc.base_model.lora_targets) <= set(tc.base_model.all_linear_targets)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["adapter=full", "quantization=nf4"], "adapter=full cannot train quantization=nf4"),
        (["adapter=full", "quantization=int8"], "quantized weights are frozen"),
        (["adapter.target_modules=[]"], "needs adapter.target_modules"),
        (["stage=pretrain"], "stage=pretrain writes a full checkpoint"),
        (["dataset=jsonl", "dataset.path=null"], "dataset=jsonl needs dataset.path"),
        (["adapter.method=qlora"], "adapter.method='qlora' is not one of"),
        (["trainer.max_steps=0"], "trainer.max_steps must be positive"),
    ],
)
def test_invalid_combinations_fail_with_a_sentence(compose_train, overrides, message):
    with pytest.raises(ConfigError, match=message):
        to_train_config(compose_train(*overrides))


def test_typo_in_a_key_fails_at_composition(compose_train):
    with pytest.raises(ConfigCompositionException):
        compose_train("trainer.max_stepz=3")


def test_wrong_type_fails_at_composition(compose_train):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_train("trainer.max_steps=many")


def test_paper_lora_preset_matches_table_1(compose_train):
    tc = to_train_config(
        compose_train("experiment=jmedlora_opencalm", "dataset.path=/data/records.jsonl", "eval.path=/data/IgakuQA")
    )
    assert tc.base_model.path == "cyberagent/open-calm-7b"
    assert (tc.adapter.method, tc.adapter.r, tc.adapter.alpha, tc.adapter.dropout) == ("lora", 8, 32, 0.05)
    assert tc.adapter.target_modules == ["query_key_value"]  # GPT-NeoX fuses query/key/value
    assert (tc.trainer.learning_rate, tc.trainer.batch_size, tc.trainer.max_steps) == (5e-5, 8, 1000)
    assert (tc.dataset.max_input_tokens, tc.dataset.max_target_tokens) == (512, 512)
    assert tc.quantization.mode == "none"


def test_paper_qlora_preset_matches_table_1(compose_train):
    tc = to_train_config(
        compose_train("experiment=jmedlora_llama2_qlora", "dataset.path=/data/records.jsonl", "eval.path=/data/IgakuQA")
    )
    assert tc.base_model.path == "meta-llama/Llama-2-70b-chat-hf"
    assert (tc.quantization.mode, tc.quantization.double_quant) == ("nf4", True)
    assert (tc.adapter.r, tc.adapter.alpha, tc.adapter.dropout) == (64, 16, 0.1)
    assert tc.adapter.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (tc.trainer.learning_rate, tc.trainer.batch_size, tc.trainer.max_steps) == (2e-4, 8, 900)
