"""What a run dir holds, and the only code that writes its bookkeeping files.

Torch-free, so the report and the entry scripts read run dirs without loading any model code.
    resolved_config.yaml   the config that produced the run (evaluate.py, resume and the report read it)
    run_status.json        the run's state (RunState, + error), so a crash never looks finished
    results.json           the final figures, written last
    model/                 the adapter (or full weights) + tokenizer
    checkpoints/           Trainer checkpoints for resume
    eval/base, eval/tuned  metrics.json + predictions.jsonl of train.py's scoring (evaluate.py writes both files at
                           the top of its own run dir)
    metrics.jsonl          every logged scalar, one flushed line per log call, appended on resume
    api_answers.jsonl      evaluate.py backend=openai: one line per API attempt (medtune.api_client.RequestLog)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from medtune.errors import ConfigError

RESOLVED_CONFIG = "resolved_config.yaml"
STATUS_FILE = "run_status.json"
RESULTS_FILE = "results.json"
MODEL_SUBDIR = "model"
CHECKPOINT_SUBDIR = "checkpoints"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
BASE_EVAL_SUBDIR = "eval/base"  # train.py's scoring of the untuned base
TUNED_EVAL_SUBDIR = "eval/tuned"  # ... and of the tuned model
METRICS_LOG = "metrics.jsonl"
API_ANSWERS_FILE = "api_answers.jsonl"
LOCK_FILE = ".medtune.lock"  # held while a run works in the dir; the OS releases it when the process dies


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
    """The run was asked to stop (SIGTERM / SIGUSR2) and saved what it had."""

    state = RunState.preempted


class Pruned(Stopped):
    """A search's pruner stopped this trial early."""

    state = RunState.pruned


def write_status(run_dir: Path, status: RunState, error: BaseException | None = None) -> None:
    payload: dict[str, Any] = {"status": str(status)}
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
def claimed(run_dir: Path, resuming: bool) -> Iterator[None]:
    """Hold the run dir for one run: a second process on the same dir stops at once instead of sharing its files
    and W&B run, and a new run never writes over a finished or interrupted one (that one is continued with
    `resume=<dir>`)."""
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
        if not resuming and (run_dir / RESOLVED_CONFIG).exists():
            raise ConfigError(
                f"{run_dir} already holds a run ({RESOLVED_CONFIG} is there); continue it with resume={run_dir}, "
                "or give this run its own hydra.run.dir."
            )
        yield
    finally:
        lock.release()
