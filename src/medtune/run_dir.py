"""What a run dir holds, and the only code that writes its bookkeeping files.

Torch-free, so the report and the entry scripts read run dirs without loading any model code.
    resolved_config.yaml   the config that produced the run (evaluate.py, resume and the report read it; evaluate.py
                           writes its own as evaluated)
    run_status.json        the run's state (RunState, + error), so a crash never looks finished
    results.json           the final figures, written last
    model/                 the adapter (or full weights) + tokenizer
    checkpoints/           Trainer checkpoints for resume
    eval/base, eval/tuned  metrics.json + predictions.jsonl of train.py's scoring (evaluate.py writes both files at
                           the top of its own run dir)
    metrics.jsonl          every logged scalar, one flushed line per log call, appended on resume
    api_answers.jsonl      evaluate.py backend=openai: one line per API attempt (medtune.api_client.RequestLog)
    api_batches.json       generate_data.py generator.batch=true: the Batch API jobs' file and batch ids, so a
                           killed run reattaches to its batches (medtune.datagen.batch)
    wandb_run_id.txt       the W&B run id, so every resume continues the same W&B run
    export/                `medtune export`'s W&B run of this run dir (its files and id; the exported folder is
                           wherever --out says, and holds README.md + medtune_export.json beside the weights)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import OmegaConf

from medtune.errors import ConfigError, DataError
from medtune.jsonl import read_jsonl_objects

log = logging.getLogger(__name__)

RESOLVED_CONFIG = "resolved_config.yaml"
STATUS_FILE = "run_status.json"
RESULTS_FILE = "results.json"
MODEL_SUBDIR = "model"
ADAPTER_METHOD_FILE = "medtune_adapter.json"  # in model/: the method, where peft's adapter_config.json cannot say
EVA_STATE_FILE = "eva_state.pt"  # EVA: the SVD of the layer inputs, computed once per run (a resume reads it)
ADAPTER_INIT_SUBDIR = "adapter_init"  # PiSSA/OLoRA: the adapter before step 1, to save a plain LoRA at the end
CHECKPOINT_SUBDIR = "checkpoints"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
EVAL_SUBDIR = "eval"  # every scoring of the run: base, tuned, steps/
BASE_EVAL_SUBDIR = "eval/base"  # train.py's scoring of the untuned base
TUNED_EVAL_SUBDIR = "eval/tuned"  # ... and of the tuned model
PREDICTIONS = {"base": f"{BASE_EVAL_SUBDIR}/{PREDICTIONS_FILE}", "tuned": f"{TUNED_EVAL_SUBDIR}/{PREDICTIONS_FILE}"}
STEP_EVAL_SUBDIR = "eval/steps"  # the in-training QA scorings, one step-<n>/ each
METRICS_LOG = "metrics.jsonl"
API_ANSWERS_FILE = "api_answers.jsonl"
API_BATCHES_FILE = "api_batches.json"
RUN_ID_FILE = "wandb_run_id.txt"  # the run dir's W&B id, created once and reused on every resume
CELL_INDEX = ".cells"  # in a sweep dir: which cell dir computes each cell key (medtune.sweep.done_elsewhere)
LOCK_FILE = ".medtune.lock"  # held while a run works in the dir; the OS releases it when the process dies
# A hyper-parameter search's sweep dir (medtune.search): the study, and one run dir per trial under its study's name.
STUDY_FILE = "optuna.db"  # sqlite storage; hydra.sweeper.storage=journal writes STUDY_JOURNAL instead
STUDY_JOURNAL = "optuna.journal"
TRIAL_SUBDIR = "{study}/trial-{number:03d}"  # a re-asked trial has a new number, so a fresh dir
# `medtune export`: its W&B bookkeeping in the run dir, and what it writes beside the weights in the exported folder.
EXPORT_SUBDIR = "export"
MODEL_CARD = "README.md"  # the Hugging Face model card
EXPORT_RECORD = "medtune_export.json"  # where the folder came from (run dir, tuning, steps, the run's accuracy)


def holds_study(sweep_dir: Path) -> bool:
    """Whether a sweep dir is a hyper-parameter search's (its state is then the study's, medtune.search.status)."""
    return (sweep_dir / STUDY_FILE).is_file() or (sweep_dir / STUDY_JOURNAL).is_file()


def write_text(path: Path, text: str) -> None:
    """Write-then-rename, so a reader (or a crash) never sees half a file."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


class RunState(StrEnum):
    """The one list of states a run dir can be in (run_status.json's `status`), for training, evaluation and
    data generation alike.

    running → finished            the work is done; its results are final
    running → failed              an error stopped it; running it again starts the failed work over
    running → preempted           a signal (SLURM requeue, preemption, time limit) stopped it cleanly after a
                                  checkpoint; running it again continues from there
    running → pruned              a hyper-parameter search stopped it early on purpose; its results so far stand
    running (no live process)     killed without a word (kill -9, a lost node): treated as preempted
    """

    running = "running"
    finished = "finished"
    failed = "failed"
    preempted = "preempted"
    pruned = "pruned"


FINAL_STATES = frozenset({RunState.finished, RunState.pruned})  # nothing left to do: a re-run skips them


class Stopped(Exception):
    """Raised inside a run to end it in a state other than failed (preempted, pruned); `lifecycle` records it."""

    state: RunState = RunState.preempted


class Preempted(Stopped):
    """The run was asked to stop (SIGTERM / SIGUSR2) and saved what it had; `previous` is the signal handler
    medtune replaced (submitit's requeues the job), to be called once the run dir is in order."""

    state = RunState.preempted

    def __init__(self, message: str, signum: int | None = None, previous: Any = None) -> None:
        super().__init__(message)
        self.signum, self.previous = signum, previous


class Pruned(Stopped):
    """A search's pruner stopped this trial early."""

    state = RunState.pruned


def write_status(run_dir: Path, status: RunState, error: BaseException | None = None) -> None:
    payload: dict[str, Any] = {"status": str(status)}
    if "SLURM_JOB_ID" in os.environ:  # `medtune.sweep status` names the job; a requeued job keeps its id
        payload["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    if error is not None:
        payload["error"] = f"{type(error).__name__}: {error}"
    write_json(run_dir / STATUS_FILE, payload)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """run_status.json's content (`status` as a RunState), or None when the run never started."""
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    return payload | {"status": RunState(payload["status"])}


@contextmanager
def lifecycle(run_dir: Path) -> Iterator[None]:
    """running while the block runs; then finished, or the state a `Stopped` names, or failed (re-raised)."""
    write_status(run_dir, RunState.running)
    try:
        yield
    except Stopped as stop:
        write_status(run_dir, stop.state, stop if str(stop) else None)
        raise
    except BaseException as err:
        write_status(run_dir, RunState.failed, err)
        raise
    write_status(run_dir, RunState.finished)


@contextmanager
def claimed(run_dir: Path) -> Iterator[None]:
    """Hold the run dir for one process: a second live process on the same dir stops at once instead of sharing
    its files and W&B run. The OS releases the lock when its holder dies, so a dir whose status says running but
    whose lock is free was killed (kill -9, a lost node) and can be continued."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"{run_dir} is in use by another running medtune process; wait for it, or give this run its own "
            "hydra.run.dir."
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_live(run_dir: Path) -> bool:
    """Whether a process holds the run dir right now (its lock is taken)."""
    if not (run_dir / LOCK_FILE).exists():
        return False
    lock = FileLock(str(run_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def effective_state(run_dir: Path) -> RunState | None:
    """The state a re-run acts on: `running` without a live process is what a kill leaves, i.e. preempted."""
    status = read_status(run_dir)
    if status is None:
        return None
    state = status["status"]
    return RunState.preempted if state == RunState.running and not is_live(run_dir) else state


# Where a run is kept and tracked, and what its card says, not what it computes (keys and their subtrees).
BOOKKEEPING = ("resume", "cache_dir", "wandb", "base_model.license")


def is_bookkeeping(key: str) -> bool:
    """A dotted config key (or one below it) that does not change what a run computes."""
    return any(key == kept or key.startswith(kept + ".") for kept in BOOKKEEPING)


def without_bookkeeping(plain_config: dict[str, Any]) -> dict[str, Any]:
    """The config minus its bookkeeping keys: what a run computes."""
    kept = {key: value for key, value in plain_config.items() if not is_bookkeeping(key)}
    for key in BOOKKEEPING:
        parent, _, leaf = key.rpartition(".")
        if parent and isinstance(kept.get(parent), dict):
            kept[parent] = {k: v for k, v in kept[parent].items() if k != leaf}
    return kept


def previous_run(out: Path, plain_config: dict[str, Any]) -> dict[str, Any] | None:
    """What a run dir already holds for this config. A dir with a run of another config is refused (naming the
    keys that differ); a finished (or pruned) run is returned as it is, so a re-run sweep skips it; an interrupted
    or failed one (None) is continued from its last checkpoint, into the same W&B run."""
    saved_path = out / RESOLVED_CONFIG
    if not saved_path.exists():
        return None
    saved = OmegaConf.to_container(OmegaConf.load(saved_path))
    assert isinstance(saved, dict)
    changed = [key for key in changed_keys(plain_config, saved) if not is_bookkeeping(key)]
    if changed:
        raise ConfigError(
            f"{out} holds a run started with a different config (changed: {', '.join(changed)}); give this run "
            "its own hydra.run.dir (or a new hydra.sweep.dir)."
        )
    state = effective_state(out)
    if state in FINAL_STATES and (out / RESULTS_FILE).exists():
        log.info("%s already %s: nothing to do", out, state)
        return json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))
    if state == RunState.pruned:
        return {"status": RunState.pruned, "run_dir": str(out), "objective": float("nan")}
    return None  # continued: training logs the checkpoint it resumes from


def changed_keys(new: dict[str, Any], old: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    keys = []
    for key in sorted(new.keys() | old.keys()):
        a, b = new.get(key), old.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def read_correct(path: Path) -> dict[str, bool] | None:
    """problem_id → correct from an evaluation's predictions.jsonl (None when the file is absent)."""
    if not path.is_file():
        return None
    correct = {}
    for number, row in read_jsonl_objects(path):
        for key in ("problem_id", "correct"):
            if key not in row:
                raise DataError("missing field", path=path, line=number, field=key)
        correct[str(row["problem_id"])] = bool(row["correct"])
    return correct
