"""The folder itself: which runs can be exported, the run's model loaded as it was trained and merged, and the
weights, tokenizer and generation config written (atomically: an interrupted export leaves no half folder)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from medtune.config import AdapterMethod, QuantMode, TrainConfig
from medtune.errors import ConfigError
from medtune.run_dir import MODEL_CARD, MODEL_SUBDIR, RESOLVED_CONFIG, RunState, effective_state

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

# peft initialisations that rewrite the base weights when the adapter is created (init_lora_weights="pissa",
# "pissa_niter_16", "olora", "corda", "loftq"): an adapter saved without peft's conversion to a plain LoRA
# (save_pretrained(path_initial_model_for_weight_conversion=...), which records init_lora_weights=true) only applies
# to that rewritten base, which no run dir keeps.
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")
ADAPTER_CONFIG = "adapter_config.json"  # peft's CONFIG_NAME
# What a run's model/ holds that is not for publishing: the Trainer's pickled arguments, and peft's stub card
# (the export writes its own README.md).
NOT_EXPORTED = ("training_args.bin", MODEL_CARD)


class ExportKind(StrEnum):
    merged = "merged"  # the adapter merged into the base: a plain transformers model
    adapter = "adapter"  # the adapter alone (--adapter-only), to load onto the base with peft
    full = "full"  # a fully fine-tuned run: its weights as they are


def exportable_run(run_dir: Path) -> TrainConfig:
    """The config of a finished train.py run that has trained weights; anything else is one clear error."""
    from medtune.config import load_run_config

    config_path = run_dir / RESOLVED_CONFIG
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a train.py run dir (no {RESOLVED_CONFIG}).")
    if "backend" in (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}):
        raise ConfigError(f"{run_dir} is an evaluate.py run, not a train.py run: it trained nothing to export.")
    state = effective_state(run_dir)
    if state != RunState.finished:
        raise ConfigError(
            f"{run_dir} has not finished (state: {state or 'never started'}); finish it first "
            f"(`medtune train resume={run_dir}`), then export."
        )
    tc = load_run_config(run_dir)
    if tc.adapter.method == AdapterMethod.none or not (run_dir / MODEL_SUBDIR).is_dir():
        raise ConfigError(
            f"{run_dir} trained nothing (adapter={tc.adapter.method}, no {MODEL_SUBDIR}/): its model is the base "
            f"{tc.base_model.path} itself."
        )
    _check_adapter_applies_to_base(run_dir / MODEL_SUBDIR)
    return tc


def _check_adapter_applies_to_base(model_dir: Path) -> None:
    path = model_dir / ADAPTER_CONFIG
    init = json.loads(path.read_text(encoding="utf-8")).get("init_lora_weights") if path.is_file() else None
    if isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS):
        raise ConfigError(
            f"{path}: init_lora_weights={init} rewrote the base weights when the adapter was created, and the adapter "
            "was saved without peft's conversion to a plain LoRA (save_pretrained(path_initial_model_for_weight_"
            "conversion=...)); merged into the saved base it would give another model, so nothing was exported."
        )


def export_kind(tc: TrainConfig, adapter_only: bool) -> ExportKind:
    if tc.adapter.method == AdapterMethod.full:
        if adapter_only:
            raise ConfigError("--adapter-only: this run fine-tuned every weight (adapter=full); there is no adapter.")
        return ExportKind.full
    return ExportKind.adapter if adapter_only else ExportKind.merged


def check_out(out: Path) -> None:
    """Never write into a folder that holds anything: an export is a new folder (or an empty one)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not empty; give a new folder (nothing was written).")


def export_dtype(tc: TrainConfig) -> str:
    """The dtype the exported weights are saved in: a 4-bit run computed in its compute dtype, the adapter's
    corrections were learned there, so the dequantized base is kept in it; otherwise the base's own dtype."""
    if tc.quantization.mode == QuantMode.nf4:
        return str(tc.quantization.compute_dtype)  # type: ignore[attr-defined]
    return str(tc.base_model.dtype)


def merged_model(run_dir: Path, tc: TrainConfig) -> PreTrainedModel:
    """The run's model as one plain transformers model, no peft left in it.

    A quantized base is loaded exactly as the run loaded it (the same bitsandbytes settings), then dequantized
    (transformers' `dequantize`) into the compute dtype, and only then is the adapter attached and merged with
    peft's `merge_and_unload`: the adapter was trained against the quantized weights, so merging it into the
    original full-precision weights instead would add back the quantization error it learned around.
    """
    from peft import PeftModel

    from medtune.models import load_base_model, load_trained, torch_dtype

    if tc.adapter.method == AdapterMethod.full:
        return load_trained(run_dir)[0]
    model, _ = load_base_model(tc.base_model, tc.quantization)
    if tc.quantization.mode != QuantMode.none:
        with _quiet_dequantize_notice():
            model = model.dequantize(dtype=torch_dtype(export_dtype(tc)))
    return PeftModel.from_pretrained(model, str(run_dir / MODEL_SUBDIR)).merge_and_unload()


@contextmanager
def _quiet_dequantize_notice() -> Iterator[None]:
    """transformers announces the dtype it dequantizes to, which export_dtype already chose on purpose."""
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.integrations.bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_weights(run_dir: Path, tc: TrainConfig, kind: ExportKind, folder: Path) -> None:
    """The model files of the export: merged (or full) weights as safetensors with the generation config, or the
    adapter's own files; in both cases the tokenizer the run saved, with its chat template."""
    from transformers import AutoTokenizer

    model_dir = run_dir / MODEL_SUBDIR
    if kind == ExportKind.adapter:
        for path in sorted(p for p in model_dir.iterdir() if p.is_file() and p.name not in NOT_EXPORTED):
            shutil.copy2(path, folder / path.name)
        return
    model = merged_model(run_dir, tc)
    model.save_pretrained(str(folder))  # safetensors, config.json and generation_config.json
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(folder))


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A staging folder beside `out` that becomes `out` only when everything is written; one left by an
    interrupted export is ours and is started over."""
    staging = out.with_name(f".{out.name}.exporting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.is_dir():
        out.rmdir()  # empty (check_out): the rename below takes its place
    os.replace(staging, out)
