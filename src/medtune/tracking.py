"""Weights & Biases for every medtune run (training, evaluation, data generation, reports).

Offline by default, never untracked, one run per job, resumable.

The run id is stored in the run dir, so a resumed run (`resume=<run dir>`) continues the same W&B run.
Offline runs write real run files under `<run dir>/wandb/` that `wandb sync` uploads later.
"""

from __future__ import annotations

import logging
import resource
import secrets
from pathlib import Path
from typing import Any

import wandb

from medtune.config import WandbConfig

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id.txt"
# Trainer log keys → medtune metric names (anything else lands under train/ or eval/ as it is).
METRIC_NAMES = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "epoch": "train/epoch",
    "num_input_tokens_seen": "train/tokens_seen",
    "eval_loss": "eval/loss",
}


def start_wandb_run(
    wb: WandbConfig, output_dir: Path, config: dict[str, Any], tags: list[str], group: str, name: str, job_type: str
) -> Any:
    """Start (or resume) this run dir's W&B run; an online failure falls back to offline with a warning."""
    settings: dict[str, Any] = {
        "project": wb.project,
        "entity": wb.entity,
        "group": wb.group or group,
        "name": wb.name or name,
        "tags": sorted(set(tags) | set(wb.tags)),
        "config": config,
        "dir": str(output_dir),
        "id": _run_id(output_dir),
        "resume": "allow",
        "job_type": job_type,
        "reinit": "finish_previous",  # a multirun's jobs share one process: never share a run
    }
    try:
        return wandb.init(mode=wb.mode, **settings)
    except Exception as err:  # network, auth, server: the run must still be tracked
        if wb.mode != "online":
            raise
        log.warning(
            "W&B online init failed (%s: %s). Continuing in OFFLINE mode; upload later with: wandb sync %s",
            type(err).__name__,
            err,
            output_dir / "wandb",
        )
        wandb.teardown()  # the failed attempt still holds the run id in W&B's service process
        return wandb.init(mode="offline", **settings)


def _run_id(output_dir: Path) -> str:
    """The run dir's W&B id, created once and reused on resume."""
    path = output_dir / RUN_ID_FILE
    if path.exists():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # W&B ids are short lowercase alphanumerics
    path.write_text(run_id)
    return run_id


def memory_metrics() -> dict[str, float]:
    """Peak memory since the previous call: CUDA allocated/reserved, else the process's peak RSS.

    Both peaks are reset on each read, so a multirun's jobs sharing one process report their own peaks.
    """
    import torch  # lazily: generate_data and the report track runs without loading torch

    if torch.cuda.is_available():
        metrics = {
            "memory/cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
            "memory/cuda_max_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
        }
        torch.cuda.reset_peak_memory_stats()
        return metrics
    return {"memory/peak_rss_mb": _peak_rss_mb_and_reset()}


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
