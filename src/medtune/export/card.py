"""The model card (README.md) of an export, generated from the run: base model and licence, data,
hyper-parameters, the QA results with their confidence intervals (the report's cells and formatting), where the
run is tracked, and how to load the folder. The metadata block is huggingface_hub's `ModelCardData`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.config import QuantMode, TrainConfig, to_plain_dict, tuning_method
from medtune.enums import WandbMode
from medtune.export.merge import ExportKind, export_dtype
from medtune.metric_keys import TRAIN_GLOBAL_STEP
from medtune.run_dir import MODEL_CARD, RESULTS_FILE

LICENCE_UNKNOWN = "see the base model's card"
CARD_GROUPS = ("adapter", "quantization", "trainer")  # the hyper-parameters the card lists, key by key


def read_results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RESULTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def base_licence(tc: TrainConfig) -> str | None:
    """The base's licence: its base_model preset's, else the `license` of a local base folder's own model card."""
    if tc.base_model.license:
        return tc.base_model.license
    card = Path(tc.base_model.path).expanduser() / MODEL_CARD
    if not card.is_file():
        return None
    from huggingface_hub import ModelCard

    return ModelCard.load(card).data.license


def model_card(run_dir: Path, tc: TrainConfig, kind: ExportKind, title: str) -> str:
    """The README.md text: YAML metadata the hub reads, then the sections a reader of the model asks for."""
    from huggingface_hub import ModelCard, ModelCardData

    results = read_results(run_dir)
    licence = base_licence(tc)
    hub_base = _hub_id(tc)
    data = ModelCardData(
        license=licence,
        base_model=hub_base,
        base_model_relation=("adapter" if kind == ExportKind.adapter else "finetune") if hub_base else None,
        library_name="peft" if kind == ExportKind.adapter else "transformers",
        pipeline_tag="text-generation",
        language=["ja"],
        tags=["medtune", "medical", tuning_method(tc.adapter.method, tc.quantization.mode)],
    )
    sections = [
        f"# {title}",
        _summary(tc, kind, results),
        _base_section(tc, licence),
        _data_section(tc),
        _hyper_parameters(tc),
        _results_section(run_dir, tc),
        _tracking_section(run_dir, results),
        _usage(kind, tc),
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n"))


def _hub_id(tc: TrainConfig) -> str | None:
    """The base as the hub knows it (the card's `base_model` links it); None for a local folder or a tiny model."""
    path = tc.base_model.path
    return None if tc.base_model.tiny or Path(path).expanduser().exists() else path


def _summary(tc: TrainConfig, kind: ExportKind, results: dict[str, Any]) -> str:
    tuning = tuning_method(tc.adapter.method, tc.quantization.mode)
    steps = results.get(TRAIN_GLOBAL_STEP, tc.trainer.max_steps)
    what = {
        ExportKind.merged: f"the adapter merged into the base weights, saved in {export_dtype(tc)}",
        ExportKind.adapter: "the adapter alone (load it onto the base with peft)",
        ExportKind.full: "every weight fine-tuned",
    }[kind]
    text = f"`{tc.base_model.name}` tuned with **{tuning}** for {steps} steps by medtune ({tc.stage}): {what}."
    if kind == ExportKind.merged and tc.quantization.mode != QuantMode.none:
        text += (
            f" The run trained the adapter on the {tc.quantization.mode}-quantized base; the export loaded that base "
            f"as the run did and dequantized it to {export_dtype(tc)} before merging, so the merged weights are the "
            "ones the adapter was trained against (not the original full-precision weights)."
        )
    return text


def _base_section(tc: TrainConfig, licence: str | None) -> str:
    base = tc.base_model
    lines = [f"- model: `{base.path}`" + (f" (revision `{base.revision}`)" if base.revision else "")]
    lines.append(f"- licence: {licence or LICENCE_UNKNOWN}")
    return "## Base model\n\n" + "\n".join(lines)


def _data_section(tc: TrainConfig) -> str:
    ds = tc.dataset
    where = {"demo": "medtune's bundled demo records"}.get(str(ds.source), f"`{ds.path}`")
    lines = [f"- source: {ds.source}, {where}" + (f" (config `{ds.name}`, split `{ds.split}`)" if ds.name else "")]
    lines.append(
        f"- prompt template: `{ds.prompt_template}`; loss on inputs: {ds.train_on_inputs}; packing: {ds.packing}"
    )
    lines.append(f"- truncation: {ds.max_input_tokens} prompt / {ds.max_target_tokens} response tokens")
    if ds.limit:
        lines.append(f"- only the first {ds.limit} records")
    return "## Training data\n\n" + "\n".join(lines)


def _hyper_parameters(tc: TrainConfig) -> str:
    plain = to_plain_dict(tc)
    rows = [
        f"| `{group}.{key}` | `{value}` |"
        for group in CARD_GROUPS
        for key, value in plain[group].items()
        if not isinstance(value, dict)
    ]
    return "## Hyper-parameters\n\n| key | value |\n|---|---|\n" + "\n".join(rows)


def _results_section(run_dir: Path, tc: TrainConfig) -> str:
    """The run's QA scores as the comparison report shows them: before and after tuning, each with its bootstrap
    CI, and the paired test on the same questions (medtune.report's cells and cell text)."""
    from medtune.report.cells import build_cell
    from medtune.report.matrix import base_scorings
    from medtune.report.records import read_run_dir
    from medtune.report.tables import legend, render_cell
    from medtune.stats import DEFAULT_N_BOOT

    record = read_run_dir(run_dir)
    if record.tuned_correct is None:
        return ""  # not scored on QA (eval.at_end=false, or stage=pretrain)
    suite = tc.eval.suite
    rows = [("after tuning (this model)", build_cell([record]))]
    for untuned in base_scorings([record]):  # the run's scoring of its base before tuning, as the report shows it
        loaded = f" ({tc.quantization.mode}, as the run loaded it)" if tc.quantization.mode != QuantMode.none else ""
        rows.insert(0, (f"the base before tuning{loaded}", build_cell([untuned])))
    n = len(record.tuned_correct)
    lines = [f"## Results: `{suite}` ({n} questions, eval.mode={tc.eval.mode})", "", "| model | QA |", "|---|---|"]
    lines += [f"| {label} | {render_cell(cell)} |" for label, cell in rows]
    return "\n".join([*lines, "", legend(DEFAULT_N_BOOT)])


def _tracking_section(run_dir: Path, results: dict[str, Any]) -> str:
    lines = [f"- run dir: `{run_dir.resolve()}` (medtune train; exported with `medtune export`)"]
    mode = results.get("wandb/mode", "disabled")
    if mode == WandbMode.online:
        lines.append(f"- W&B run: {results['wandb/url']}")
    elif mode == WandbMode.offline:
        lines.append(f"- W&B run `{results['wandb_run_id']}` (offline; `wandb sync {results['wandb/files']}`)")
    return "## Tracking\n\n" + "\n".join(lines)


def _usage(kind: ExportKind, tc: TrainConfig) -> str:
    if kind == ExportKind.adapter:
        load = (
            "from peft import AutoPeftModelForCausalLM\n"
            'model = AutoPeftModelForCausalLM.from_pretrained("<this folder>")'
            + ("  # quantization_config=... as trained, or none" if tc.quantization.mode != QuantMode.none else "")
        )
    else:
        load = "from transformers import AutoModelForCausalLM\n"
        load += 'model = AutoModelForCausalLM.from_pretrained("<this folder>")'
    tokenizer = 'from transformers import AutoTokenizer\ntokenizer = AutoTokenizer.from_pretrained("<this folder>")'
    return f"## Use\n\n```python\n{load}\n{tokenizer}\n```"
