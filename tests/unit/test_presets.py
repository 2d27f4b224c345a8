"""The paper presets, value by value, each with its source.

Sources: Sukeda et al. (2024, arXiv 2310.10083) Table 1; for QLoRA the paper defers every other value to "the
default setting of the QLoRA library", artidoro/qlora's qlora.py (TrainingArguments defaults) and its
scripts/finetune_*.sh (--bf16); for LoRA it cites Hugging Face PEFT, which sets no training hyper-parameters, so
transformers' TrainingArguments defaults apply.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest
import yaml

from medtune.config import to_plain_dict, to_train_config
from medtune.errors import ConfigError
from medtune.training import check_gpu_memory

from helpers import CONF

PATHS = ("dataset.path=/data/records.jsonl", "eval.path=/data/IgakuQA")

OPENCALM_LORA = {
    "base_model.path": "cyberagent/open-calm-7b",  # Table 1: OpenCALM-7B
    "adapter.method": "lora",  # Table 1: LoRA
    "adapter.r": 8,  # Table 1
    "adapter.alpha": 32,  # Table 1
    "adapter.dropout": 0.05,  # Table 1
    "adapter.target_modules": ["query_key_value"],  # Table 1 query/key/value; GPT-NeoX fuses them in one layer
    "quantization.mode": "none",  # Table 1: 16-bit LoRA
    "dataset.max_input_tokens": 512,  # Table 1
    "dataset.max_target_tokens": 512,  # Table 1
    "trainer.learning_rate": 5e-5,  # Table 1
    "trainer.batch_size": 8,  # Table 1
    "trainer.grad_accum": 1,  # Table 1's batch of 8 in one step
    "trainer.max_steps": 1000,  # Table 1: 1k steps (3k, 10k in the matrix sweep)
    "trainer.optim": "adamw_torch",  # TrainingArguments: AdamW
    "trainer.lr_scheduler": "linear",  # TrainingArguments default
    "trainer.warmup_ratio": 0.0,  # TrainingArguments default
    "trainer.max_grad_norm": 1.0,  # TrainingArguments default
    "trainer.weight_decay": 0.0,  # TrainingArguments default
    "trainer.group_by_length": False,  # TrainingArguments default
}

LLAMA2_QLORA = {
    "base_model.path": "meta-llama/Llama-2-70b-chat-hf",  # Table 1: Llama2-70B-chat
    "adapter.method": "lora",  # QLoRA = LoRA on a 4-bit base
    "adapter.r": 64,  # Table 1 (= qlora.py lora_r)
    "adapter.alpha": 16,  # Table 1 (= qlora.py lora_alpha)
    "adapter.dropout": 0.1,  # Table 1 (qlora.py default 0.0 is overridden)
    "adapter.target_modules": ["all-linear"],  # Table 1 "all linear layers" = qlora.py find_all_linear_names
    # (every Linear4bit but lm_head) = peft's all-linear (tests/unit/test_models.py checks the layers it wraps)
    "quantization.mode": "nf4",  # Table 1 4-bit NormalFloat (= qlora.py quant_type, bits=4)
    "quantization.double_quant": True,  # qlora.py double_quant
    "quantization.compute_dtype": "bfloat16",  # qlora.py compute dtype under --bf16
    "base_model.dtype": "bfloat16",  # qlora.py torch_dtype under --bf16
    "dataset.max_input_tokens": 512,  # Table 1 (qlora.py source_max_len 1024 overridden)
    "dataset.max_target_tokens": 512,  # Table 1 (qlora.py target_max_len 256 overridden)
    "trainer.learning_rate": 2e-4,  # Table 1 (= qlora.py learning_rate)
    "trainer.batch_size": 8,  # Table 1
    "trainer.grad_accum": 1,  # Table 1's batch of 8 in one step
    "trainer.max_steps": 900,  # Table 1 (3k in the matrix sweep)
    "trainer.optim": "paged_adamw_32bit",  # qlora.py optim
    "trainer.max_grad_norm": 0.3,  # qlora.py max_grad_norm
    "trainer.lr_scheduler": "constant",  # qlora.py lr_scheduler_type (transformers' constant ignores warm-up)
    "trainer.warmup_ratio": 0.03,  # qlora.py warmup_ratio
    "trainer.weight_decay": 0.0,  # qlora.py weight_decay
    "trainer.group_by_length": True,  # qlora.py group_by_length
    "trainer.gradient_checkpointing": True,  # qlora.py gradient_checkpointing
    "trainer.mixed_precision": "bf16",  # qlora scripts/finetune_*.sh --bf16
    "trainer.logging_steps": 10,  # qlora.py logging_steps
}


def _dotted(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize(
    ("preset", "expected"), [("jmedlora_opencalm", OPENCALM_LORA), ("jmedlora_llama2_qlora", LLAMA2_QLORA)]
)
def test_paper_preset_values_match_their_sources(compose_config, preset, expected):
    plain = to_plain_dict(to_train_config(compose_config("train", f"experiment={preset}", *PATHS)))
    actual = {key: _dotted(plain, key) for key in expected}
    assert actual == expected


def test_qlora_constant_schedule_is_flat_from_step_zero_as_in_qlora_py():
    """qlora.py pairs `constant` with warmup_ratio 0.03; transformers' `constant` ignores warm-up, so the
    library trained at 2e-4 from the first step. The preset keeps both values and therefore that behaviour."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    scheduler = get_scheduler("constant", optimizer, num_warmup_steps=27, num_training_steps=900)
    assert scheduler.get_last_lr() == [2e-4]


def test_gpu_presets_state_their_memory_and_stop_on_a_gpu_too_small(compose_config):
    opencalm = to_train_config(compose_config("train", "experiment=jmedlora_opencalm", *PATHS))
    qlora = to_train_config(compose_config("train", "experiment=jmedlora_llama2_qlora", *PATHS))
    assert qlora.gpu_memory.needed_gb(8) == pytest.approx(68.5)  # README: 68.5 GB allocated at batch 8
    check_gpu_memory(qlora, 85.0)  # an 80 GB H100 reports 85.0e9 bytes (79.2 GiB)
    check_gpu_memory(qlora, None)  # no CUDA device: nothing to check
    check_gpu_memory(to_train_config(compose_config("train")), 1.0)  # the demo states no GPU memory
    with pytest.raises(ConfigError, match=r"needs about 20\.8 GB .* this GPU has 17\.1 GB: use trainer\.batch_size=3 "
                       r"trainer\.grad_accum=3"):  # fmt: skip
        check_gpu_memory(opencalm, 17.1)
    with pytest.raises(ConfigError, match=r"does not fit even at trainer\.batch_size=1"):
        check_gpu_memory(qlora, 51.0)  # a 48 GB card


# The 2026 bases, each value from the model's published config.json (see each conf/base_model file's comment).
BASES_2026 = {
    "llama31_swallow_8b_instruct": ("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5", "llama", None),
    "qwen3_8b": ("Qwen/Qwen3-8B", "qwen3", {"enable_thinking": False}),
    "qwen3_32b": ("Qwen/Qwen3-32B", "qwen3", {"enable_thinking": False}),
    "llm_jp_3_13b_instruct": ("llm-jp/llm-jp-3-13b-instruct", "llama", None),
}
DECODER_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def sweeper_cells(compose_config, experiment: str, *overrides: str) -> list[Any]:
    """Every cell of a matrix preset's Hydra sweep (the cartesian product of its sweeper params), composed and
    validated as train.py -m would."""
    params = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())["hydra"]["sweeper"]["params"]
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    preset = [f"experiment={experiment}", *overrides]
    return [to_train_config(compose_config("train", *preset, *cell)) for cell in product(*axes)]


def test_2026_matrix_trains_every_base_in_its_chat_template(compose_config):
    cells = sweeper_cells(compose_config, "medtune_2026_matrix", *PATHS)
    assert {(c.base_model.name, c.adapter.method, c.quantization.mode) for c in cells} == {
        (base, *pair) for base in BASES_2026 for pair in (("none", "none"), ("lora", "nf4"))
    }
    for cell in cells:
        path, arch, kwargs = BASES_2026[cell.base_model.name]
        base = cell.base_model
        assert (base.path, base.arch, base.chat_template_kwargs, base.dtype) == (path, arch, kwargs, "bfloat16")
        assert base.lora_targets == DECODER_LINEAR and not base.tiny
        assert cell.dataset.prompt_template == "chat" and cell.eval.chat_template is True  # trained and scored alike
        assert cell.trainer.learning_rate == 2e-4 and cell.trainer.mixed_precision == "bf16"  # the study's QLoRA recipe
        check_gpu_memory(cell, 80.0)  # no figure is stated for these bases: nothing blocks a GPU


def test_demo_2026_matrix_runs_the_tiny_chat_stand_ins(compose_config):
    cells = sweeper_cells(compose_config, "demo_2026_matrix")
    assert len(cells) == 6 and {c.base_model.name for c in cells} == {"tiny_qwen3", "tiny_llama3"}
    formats = {(c.base_model.arch, c.base_model.tiny_chat_format) for c in cells}
    assert formats == {("qwen3", "qwen3"), ("llama", "llama3")}
    assert all(c.dataset.prompt_template == "chat" and c.eval.chat_template and c.base_model.tiny for c in cells)
