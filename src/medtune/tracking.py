"""Weights & Biases for every medtune run (training, evaluation, data generation, reports).

Offline by default, never untracked, one run per job, resumable. Settings the config leaves null come from the
W&B environment variables (resolve_wandb); every logged scalar is also written to the run dir's metrics.jsonl.

The run id is stored in the run dir, so a resumed run (`resume=<run dir>`) continues the same W&B run.
Offline runs write real run files under `<run dir>/wandb/` that `wandb sync` uploads later.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from medtune.config import WandbConfig, WandbMode
from medtune.console import verbose
from medtune.errors import ConfigError
from medtune.jsonl import nonblank_lines
from medtune.metric_keys import (
    CUDA_MAX_ALLOCATED_MB,
    CUDA_MAX_RESERVED_MB,
    EVAL_LOSS,
    PEAK_RSS_MB,
    TRAIN_EPOCH,
    TRAIN_GLOBAL_STEP,
    TRAIN_GRAD_NORM,
    TRAIN_LEARNING_RATE,
    TRAIN_LOSS,
    TRAIN_LOSS_RUN_MEAN,
    TRAIN_TOKENS_SEEN,
)
from medtune.run_dir import METRICS_LOG, RUN_ID_FILE

if TYPE_CHECKING:  # wandb is imported where a run starts: reading metrics.jsonl (`medtune status`) needs no W&B
    import wandb

log = logging.getLogger(__name__)

STEP_METRIC = TRAIN_GLOBAL_STEP  # x-axis of every training chart
DEFAULT_PROJECT = "medtune"
# Trainer log keys → medtune metric names (anything else lands under train/ or eval/ as it is).
METRIC_NAMES = {
    "loss": TRAIN_LOSS,
    "train_loss": TRAIN_LOSS_RUN_MEAN,  # the Trainer's run average at the end: not a step's loss
    "learning_rate": TRAIN_LEARNING_RATE,
    "grad_norm": TRAIN_GRAD_NORM,
    "epoch": TRAIN_EPOCH,
    "num_input_tokens_seen": TRAIN_TOKENS_SEEN,
    "eval_loss": EVAL_LOSS,
}


@dataclass(frozen=True)
class WandbSettings:
    """The W&B settings a run starts with, after the config → environment → default precedence."""

    mode: str
    project: str
    entity: str | None
    dir: Path
    group: str
    name: str
    tags: list[str]


def resolve_wandb(
    wb: WandbConfig, output_dir: Path, group: str, name: str, tags: list[str], env: Mapping[str, str] | None = None
) -> WandbSettings:
    """Each setting from the config (YAML or command line) when set, else its W&B environment variable, else
    medtune's default: offline, project medtune, files in the run dir. The one place this precedence lives."""
    env = os.environ if env is None else env

    def pick(value: str | None, var: str, default: str | None) -> str | None:
        return value if value is not None else env.get(var) or default

    mode = resolve_mode(wb.mode, env)
    env_tags = [t.strip() for t in env.get("WANDB_TAGS", "").split(",") if t.strip()]
    return WandbSettings(
        mode=mode,
        project=str(pick(wb.project, "WANDB_PROJECT", DEFAULT_PROJECT)),
        entity=pick(wb.entity, "WANDB_ENTITY", None),
        dir=Path(str(pick(wb.dir, "WANDB_DIR", str(output_dir)))).expanduser(),
        group=str(pick(wb.group, "WANDB_RUN_GROUP", group)),
        name=str(pick(wb.name, "WANDB_NAME", name)),
        tags=sorted(set(tags) | set(wb.tags if wb.tags is not None else env_tags)),
    )


def resolve_mode(mode: str | None, env: Mapping[str, str] | None = None) -> str:
    """The W&B mode: the config's, else $WANDB_MODE, else offline."""
    resolved = mode or (os.environ if env is None else env).get("WANDB_MODE") or "offline"
    if resolved not in set(WandbMode):  # a config value was checked at composition; this one came from the environment
        raise ConfigError(f"WANDB_MODE={resolved!r} is not one of {', '.join(WandbMode)}.")
    return resolved


def start_wandb_run(
    wb: WandbConfig,
    output_dir: Path,
    config: dict[str, Any],
    tags: list[str],
    group: str,
    name: str,
    job_type: str,
) -> TrackedRun:
    """Start (or resume) this run dir's W&B run; an online failure falls back to offline with a warning."""
    import wandb

    resolved = resolve_wandb(wb, output_dir, group, name, tags)
    resolved.dir.mkdir(parents=True, exist_ok=True)
    wandb.setup(console_settings())  # W&B's console notices follow the process-wide settings, not init's
    settings: dict[str, Any] = {
        "project": resolved.project,
        "entity": resolved.entity,
        "group": resolved.group,
        "name": resolved.name,
        "tags": resolved.tags,
        "config": config,
        "dir": str(resolved.dir),
        "id": _run_id(output_dir),
        "resume": "allow",
        "job_type": job_type,
        "reinit": "finish_previous",  # a multirun's jobs share one process: never share a run
        "settings": console_settings(),
    }
    try:
        run = wandb.init(mode=resolved.mode, **settings)
    except Exception as err:  # network, auth, server: the run must still be tracked
        if resolved.mode != WandbMode.online:
            raise
        log.warning(
            "W&B online init failed (%s: %s). Continuing in OFFLINE mode; upload later with: wandb sync %s",
            type(err).__name__,
            err,
            resolved.dir / "wandb",
        )
        wandb.teardown()  # the failed attempt still holds the run id in W&B's service process
        wandb.setup(console_settings())  # teardown forgot the process-wide settings
        run = wandb.init(mode="offline", **settings)
    return TrackedRun(run, output_dir / METRICS_LOG)


def console_settings() -> wandb.Settings:
    """W&B's run history/summary (`quiet`) and its info notices, the Weave advert among them (`show_info`), off
    unless $MEDTUNE_VERBOSE; its warnings and errors stay. medtune's closing summary says where the run's files are."""
    import wandb

    loud = verbose()
    return wandb.Settings(quiet=not loud, show_info=loud)


class TrackedRun:
    """A W&B run whose every logged scalar is also appended, flushed, to `<run dir>/metrics.jsonl`.

    A run killed with SIGKILL can lose the tail of its W&B run file; this file keeps every figure logged before
    the kill, a resumed run appends to it, and the report plots learning curves from it. A resumed run re-trains
    the steps after its checkpoint: a figure already logged at a step (in metrics.jsonl) is not logged again, so
    the file and the W&B history hold each step's figures once across any number of resumes. Everything else
    (summary, artifacts, id, ...) is the W&B run's own.

    SLURM signals every process of a job, W&B's service too, which then dies at once: the run goes on (and
    finishes its checkpoint) with metrics.jsonl alone, and says so once.
    """

    def __init__(self, run: Any, metrics_path: Path) -> None:
        self.run, self.metrics_path = run, metrics_path
        self._handle: TextIO | None = None
        self._logged = {
            (row[STEP_METRIC], key) for row in read_metrics_log(metrics_path) if STEP_METRIC in row for key in row
        }
        self.service_lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        """Log a row; `step` is the training step, the x-axis of train/* and eval/* (see define_training_axes)."""
        if step is not None:
            data = {key: value for key, value in data.items() if (step, key) not in self._logged}
            if not data:
                return
            self._logged |= {(step, key) for key in data}
        row = {STEP_METRIC: step, **data} if step is not None else dict(data)
        scalars = {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if scalars:
            self._write({"time": round(time.time(), 3), **scalars})
        self._to_wandb(self.run.log, row)

    def _write(self, row: dict[str, Any]) -> None:
        if self._handle is None:
            self._handle = open_appending(self.metrics_path)
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()  # on disk before the next step: a kill loses nothing that was logged

    def _to_wandb(self, call: Any, *args: Any, **kwargs: Any) -> None:
        if self.service_lost:
            return
        try:
            call(*args, **kwargs)
        except ConnectionError:  # the service process is gone (it got the job's SIGTERM too)
            self.service_lost = True
            log.warning(
                "W&B's service stopped (a signal reached it too); the figures go on in %s, and the W&B run continues "
                "when this run resumes",
                self.metrics_path,
            )

    def mark_preempting(self) -> None:
        self._to_wandb(self.run.mark_preempting)

    def finish(self, exit_code: int | None = None) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._to_wandb(self.run.finish, exit_code=exit_code)


def open_appending(path: Path) -> TextIO:
    """Append mode, after closing a line torn by a kill, so the next row starts on its own line."""
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    handle = path.open("a", encoding="utf-8")
    if torn:
        handle.write("\n")
    return handle


def read_metrics_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a line torn by a kill (or any unreadable line) is skipped."""
    rows = []
    for _, line in nonblank_lines(path) if path.is_file() else []:  # lines end at \n only (U+2028 stays inside)
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [row for row in rows if isinstance(row, dict)]


def wandb_locations(run: Any) -> dict[str, str]:
    """Where a run's W&B records are: its mode, local run files (what `wandb sync` uploads) and, online, its page."""
    if run.disabled:
        return {"wandb/mode": "disabled"}
    where = {"wandb/mode": "offline" if run.offline else "online", "wandb/files": run.settings.sync_dir}
    return where | ({} if run.offline else {"wandb/url": run.url})


def define_training_axes(run: Any) -> None:
    """Charts of train/*, eval/*, perf/* and memory/* share the training step as x-axis; summaries keep the last
    value logged (a resumed run logs from its checkpoint's step on, so W&B's own _step is no training step)."""
    run.define_metric(STEP_METRIC)
    for pattern in ("train/*", "eval/*", "perf/*", "memory/*"):
        run.define_metric(pattern, step_metric=STEP_METRIC, summary="last")


def use_artifact(run: Any, artifact: Any) -> None:
    """Record that this run consumed `artifact` (a draft built from local files), online or offline.

    W&B refuses `use_artifact` in offline mode (wandb PR #2530); for a draft artifact, online `use_artifact` only
    logs it with use_after_commit=True, and offline that same record goes into the run file, where `wandb sync`
    turns it into the use edge of the lineage graph. Same files → same digest → the same artifact version.
    """
    if run.disabled or not artifact.manifest.entries:  # nothing on disk to point at: nothing was used
        return
    if run.offline:
        run._log_artifact(artifact, use_after_commit=True)
    else:
        run.use_artifact(artifact)


def _run_id(output_dir: Path) -> str:
    """The run dir's W&B id, created once and reused on resume. Under `wandb agent` it is the agent's run id
    ($WANDB_RUN_ID), so the sweep's run and the run dir's are one."""
    path = output_dir / RUN_ID_FILE
    if path.exists():
        return path.read_text().strip()
    run_id = os.environ.get("WANDB_RUN_ID") or secrets.token_hex(4)  # W&B ids are short lowercase alphanumerics
    path.write_text(run_id)
    return run_id


def memory_metrics() -> dict[str, float]:
    """Peak memory since the previous call: CUDA allocated/reserved, else the process's peak RSS.

    Both peaks are reset on each read, so a multirun's jobs sharing one process report their own peaks.
    """
    import torch  # lazily: generate_data and the report track runs without loading torch

    if torch.cuda.is_available():
        metrics = {
            CUDA_MAX_ALLOCATED_MB: torch.cuda.max_memory_allocated() / 2**20,
            CUDA_MAX_RESERVED_MB: torch.cuda.max_memory_reserved() / 2**20,
        }
        torch.cuda.reset_peak_memory_stats()
        return metrics
    return {PEAK_RSS_MB: _peak_rss_mb_and_reset()}


def _peak_rss_mb_and_reset() -> float:
    """Linux's VmHWM, reset by writing 5 to clear_refs; elsewhere the process-lifetime ru_maxrss."""
    try:
        status = Path("/proc/self/status").read_text()
        peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        Path("/proc/self/clear_refs").write_text("5")
        return peak_kb / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def metric_name(key: str) -> str:
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    if key.startswith("eval_"):
        return "eval/" + key.removeprefix("eval_")
    return "train/" + key.removeprefix("train_")
