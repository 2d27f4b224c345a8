"""W&B lineage from data to adapter to score: which records trained which model, and which scores came from it.

    generate_data.py  ──logs──▶  dataset  records-<output dir>        (records.jsonl + manifest.json)
    train.py          ──uses──▶  dataset  (that artifact, or a file:// reference with the file's digest)
                      ──uses──▶  dataset  eval-<suite>               (the QA questions, by reference)
                      ──logs──▶  model    <base>-<method>-<quant>    (adapter or full weights + metadata)
                      ──logs──▶  results  results-<run id>           (results.json + predictions)
    evaluate.py run_dir=...  ──uses──▶  that model
    medtune export    ──uses──▶  that model
                      ──logs──▶  model    <base>-<method>-<quant>-<merged|adapter|full>   (the exported folder)
    python -m medtune.report ──uses──▶  the results of every run it reads

Artifacts are rebuilt from the files on disk wherever they are used: the same files give the same digest, hence
the same artifact version, online or offline (where `wandb sync` uploads the records later).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import wandb

from medtune import demo_assets
from medtune.config import DatasetConfig, EvalConfig, TrainConfig
from medtune.datagen.storage import MANIFEST as GENERATED_MANIFEST
from medtune.datagen.storage import RECORDS as GENERATED_RECORDS
from medtune.enums import DatasetSource, EvalSource, Stage
from medtune.metric_keys import BASE_PREFIX, EVAL_LOSS, TRAIN_GLOBAL_STEP, qa_key
from medtune.run_dir import BASE_EVAL_SUBDIR, METRICS_LOG, PREDICTIONS_FILE, RESULTS_FILE, TUNED_EVAL_SUBDIR
from medtune.tracking import use_artifact

MANIFEST_ARTIFACT_KEY = "wandb_artifact"  # the manifest's record of its dataset artifact's name
RESULTS_ARTIFACT_KEY = "wandb/results_artifact"  # in results.json
MODEL_ARTIFACT_KEY = "wandb/model_artifact"  # in results.json
MODEL_COPY_LIMIT_MB = 1024  # wandb.model_artifact=auto: copy up to this size (adapters), reference above
RESULT_FILES = (
    RESULTS_FILE,
    f"{BASE_EVAL_SUBDIR}/{PREDICTIONS_FILE}",
    f"{TUNED_EVAL_SUBDIR}/{PREDICTIONS_FILE}",
    METRICS_LOG,
)


def slug(text: str) -> str:
    """An artifact name W&B accepts (letters, digits, - _ .)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def generated_dataset_name(output_dir: Path) -> str:
    return "records-" + slug(output_dir.name)


def generated_dataset(output_dir: Path, name: str, metadata: dict[str, Any] | None = None) -> wandb.Artifact:
    """generate_data.py's records as a `dataset` artifact; train.py rebuilds the identical one to use it."""
    artifact = wandb.Artifact(name=name, type="dataset", metadata=metadata)
    for file in (GENERATED_RECORDS, GENERATED_MANIFEST):
        artifact.add_file(str(output_dir / file))
    return artifact


def training_dataset(ds: DatasetConfig, stage: str) -> wandb.Artifact:
    """The training data as used: generate_data.py's artifact when the records came from one, else a reference."""
    if ds.source == "hf":  # no file to digest: the hub dataset's address, name and split
        artifact = wandb.Artifact(slug(f"hf-{ds.path}"), "dataset", metadata={"name": ds.name, "split": ds.split})
        artifact.add_reference(f"https://huggingface.co/datasets/{ds.path}", checksum=False)
        return artifact
    if ds.source == DatasetSource.demo:
        files = [demo_assets.corpus_path()] if stage == Stage.pretrain else [demo_assets.train_path()]
        return _reference("demo-training-data", "dataset", [*files, demo_assets.heldout_path()])
    assert ds.path is not None  # validate() guarantees it for jsonl and text
    path = Path(ds.path).expanduser()
    manifest = path.parent / GENERATED_MANIFEST
    if path.name == GENERATED_RECORDS and manifest.is_file():
        name = json.loads(manifest.read_text(encoding="utf-8")).get(MANIFEST_ARTIFACT_KEY)
        if name:
            return generated_dataset(path.parent, name)
    files = [path, *([Path(ds.eval_path).expanduser()] if ds.eval_path else [])]
    return _reference(f"data-{path.stem}", "dataset", files)


def eval_dataset(eval_cfg: EvalConfig) -> wandb.Artifact:
    """The QA suite's questions (a file or, for IgakuQA, a directory), referenced with their digests."""
    path = demo_assets.questions_path() if eval_cfg.source == EvalSource.demo else Path(str(eval_cfg.path)).expanduser()
    return _reference(f"eval-{eval_cfg.suite}", "dataset", [path], {"source": eval_cfg.source})


def _reference(name: str, kind: str, paths: list[Path], metadata: dict[str, Any] | None = None) -> wandb.Artifact:
    """file:// references: W&B records each file's checksum and path, and copies nothing."""
    artifact = wandb.Artifact(slug(name), kind, metadata=metadata)
    for path in (p for p in paths if p.exists()):  # a missing file fails later, with its own located error
        artifact.add_reference(path.resolve().as_uri(), name=path.name if path.is_file() else None)
    return artifact


def use_training_inputs(run: Any, tc: TrainConfig) -> None:
    use_artifact(run, training_dataset(tc.dataset, tc.stage))
    if tc.stage == Stage.sft and (tc.eval.at_end or tc.eval.every_steps):
        use_artifact(run, eval_dataset(tc.eval))


def model_artifact(run_dir: Path, tc: TrainConfig, metadata: dict[str, Any], mode: str) -> wandb.Artifact:
    """The trained adapter (or full weights) of a run dir; `mode` copy or reference (auto: by size)."""
    from medtune.models import MODEL_SUBDIR

    name = slug(f"{tc.base_model.name}-{tc.adapter.method}-{tc.quantization.mode}")
    return folder_artifact(run_dir / MODEL_SUBDIR, name, metadata, mode)


def folder_artifact(folder: Path, name: str, metadata: dict[str, Any], mode: str) -> wandb.Artifact:
    """A model folder as a `model` artifact: its files copied, or (`reference`) pointed at; auto: copied up to
    MODEL_COPY_LIMIT_MB (an adapter), referenced above (merged weights of a large base)."""
    if mode == "auto":
        size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
        mode = "copy" if size_mb <= MODEL_COPY_LIMIT_MB else "reference"
    artifact = wandb.Artifact(name, "model", metadata=metadata | {"stored_as": mode})
    if mode == "copy":
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):  # immutable: uploaded from the folder,
            artifact.add_file(str(path), name=str(path.relative_to(folder)), policy="immutable")  # no staged copy
    else:
        artifact.add_reference(folder.resolve().as_uri())
    return artifact


def log_trained_model(run: Any, tc: TrainConfig, run_dir: Path, results: dict[str, Any]) -> str | None:
    """Log the model artifact with what a reader of the lineage graph asks first; returns its name."""
    mode = tc.wandb.model_artifact
    if mode == "off" or run.disabled:
        return None
    suite = tc.eval.suite
    metadata = {
        "base_model": tc.base_model.path,
        "base_model_name": tc.base_model.name,
        "method": tc.adapter.method,
        "quantization": tc.quantization.mode,
        "stage": tc.stage,
        "steps": results.get(TRAIN_GLOBAL_STEP),
        qa_key(suite, "accuracy"): results.get(qa_key(suite, "accuracy")),
        qa_key(suite, "accuracy", BASE_PREFIX): results.get(qa_key(suite, "accuracy", BASE_PREFIX)),
        EVAL_LOSS: results.get(EVAL_LOSS),
        "run_dir": str(run_dir),
    }
    artifact = model_artifact(run_dir, tc, metadata, mode)
    run.log_artifact(artifact)
    return artifact.name


def log_export(run: Any, tc: TrainConfig, run_dir: Path, folder: Path, kind: str, record: dict[str, Any]) -> str | None:
    """`medtune export`: the exported folder as a model artifact that uses the run's own model artifact, so the
    lineage graph goes on from the adapter to what was published; returns its name."""
    mode = tc.wandb.model_artifact
    if mode == "off" or run.disabled:
        return None
    use_trained_model(run, run_dir)
    name = slug(f"{tc.base_model.name}-{tc.adapter.method}-{tc.quantization.mode}-{kind}")
    artifact = folder_artifact(folder, name, record | {"folder": str(folder.resolve())}, mode)
    run.log_artifact(artifact)
    return artifact.name


def results_artifact(run_dir: Path, run_id: str) -> wandb.Artifact:
    """What the report reads of a run: results.json, the predictions before and after tuning, the history."""
    artifact = wandb.Artifact(f"results-{run_id}", "results")
    for relative in RESULT_FILES:
        if (run_dir / relative).is_file():
            artifact.add_file(str(run_dir / relative), name=relative)
    return artifact


def use_trained_model(run: Any, run_dir: Path) -> None:
    """evaluate.py run_dir=...: use the model artifact that run logged (rebuilt by reference: same digest)."""
    from medtune.config import load_run_config

    if not run.disabled and _results(run_dir).get(MODEL_ARTIFACT_KEY):
        use_artifact(run, model_artifact(run_dir, load_run_config(run_dir), {}, "reference"))


def use_run_results(run: Any, run_dirs: list[Path]) -> None:
    """The report: use the results artifact of every run dir it read."""
    for run_dir in run_dirs:
        if _results(run_dir).get(RESULTS_ARTIFACT_KEY):
            use_artifact(run, results_artifact(run_dir, _results(run_dir)["wandb_run_id"]))


def _results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RESULTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
