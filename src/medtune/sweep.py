"""Where a sweep stands, and re-launching it.

python -m medtune.sweep status <sweep dir>    # one line per cell; exit 0 only when every cell is done
python -m medtune.sweep resume <sweep dir>    # the sweep's own command again (its overrides read back)

A cell is the run dir of one multirun job, named by its overrides (conf/hydra/default.yaml: `hydra.sweep.subdir`),
not by its job number, so the same command finds its cells again and a grown axis adds only new ones. Re-running
the command is the whole resume protocol: each cell's train.py finds its own state (medtune.training.previous_run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock
from omegaconf import OmegaConf

from medtune.enums import AdapterMethod
from medtune.metric_keys import TRAIN_GLOBAL_STEP
from medtune.run_dir import (
    CELL_INDEX,
    EVAL_SUBDIR,
    FINAL_STATES,
    METRICS_LOG,
    RESOLVED_CONFIG,
    RESULTS_FILE,
    RUN_ID_FILE,
    RunState,
    effective_state,
    holds_study,
    read_status,
    without_bookkeeping,
    write_json,
    write_status,
)

log = logging.getLogger(__name__)

NOT_STARTED = "not started"
HYDRA_OUTPUT = ".hydra"  # Hydra's own record of each job (overrides.yaml) and of the sweep (multirun.yaml above)


@dataclass(frozen=True)
class Cell:
    name: str
    path: Path
    state: str
    error: str
    step: int | None
    total: int | None
    objective: float | None
    wandb_run_id: str | None
    slurm_job_id: str | None

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


def sweep_cells(sweep_dir: Path) -> list[Cell]:
    """Every job dir of the sweep (any depth: an override holding a path nests its dir), by name."""
    jobs = {path.parent.parent for path in sweep_dir.rglob(f"{HYDRA_OUTPUT}/overrides.yaml")}
    return sorted((read_cell(job, sweep_dir) for job in jobs if job != sweep_dir), key=lambda cell: cell.name)


def read_cell(path: Path, sweep_dir: Path) -> Cell:
    status = read_status(path) or {}
    state = effective_state(path)
    results = _json(path / RESULTS_FILE)
    config = (
        yaml.safe_load((path / RESOLVED_CONFIG).read_text(encoding="utf-8"))
        if (path / RESOLVED_CONFIG).is_file()
        else {}
    )
    run_id = path / RUN_ID_FILE
    return Cell(
        name=str(path.relative_to(sweep_dir)),
        path=path,
        state=str(state) if state is not None else NOT_STARTED,
        error=status.get("error", ""),
        step=results.get(TRAIN_GLOBAL_STEP, _last_step(path)),
        total=(config.get("trainer") or {}).get("max_steps"),
        objective=results.get("objective"),
        wandb_run_id=run_id.read_text().strip() if run_id.is_file() else None,
        slurm_job_id=status.get("slurm_job_id"),
    )


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _last_step(path: Path) -> int | None:
    from medtune.tracking import STEP_METRIC, read_metrics_log

    steps = [row[STEP_METRIC] for row in read_metrics_log(path / METRICS_LOG) if row.get(STEP_METRIC) is not None]
    return max(steps) if steps else None


def status_lines(cells: list[Cell]) -> list[str]:
    width = max((len(cell.name) for cell in cells), default=0)
    return [f"{cell.name:<{width}}  {_cell_figures(cell)}".rstrip() for cell in cells]


def _cell_figures(cell: Cell) -> str:
    step = f"{_or_dash(cell.step)}/{_or_dash(cell.total)}"
    objective = f"{cell.objective:.3f}" if isinstance(cell.objective, float | int) else "-"
    ids = [f"wandb {cell.wandb_run_id}"] if cell.wandb_run_id else []
    ids += [f"slurm {cell.slurm_job_id}"] if cell.slurm_job_id else []
    return f"{cell.state:<11} step {step:<9} objective {objective:<6}  {' '.join(ids)}"


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def status(sweep_dir: Path) -> int:
    """Print one line per cell and a count per state; 0 when every cell is done, 1 otherwise. A search's sweep
    dir lists its trials with their parameters instead, done when each study holds its n_trials."""
    if holds_study(sweep_dir):
        from medtune.search.status import search_status

        return search_status(sweep_dir)
    cells = sweep_cells(sweep_dir)
    if not cells:
        print(f"medtune: error: {sweep_dir} holds no multirun cells ({HYDRA_OUTPUT}/overrides.yaml)", file=sys.stderr)
        return 2
    print("\n".join(status_lines(cells)))
    done = sum(cell.done for cell in cells)
    print(f"{done} of {len(cells)} cells done")
    return 0 if done == len(cells) else 1


def resume_command(sweep_dir: Path) -> list[str]:
    """The command that launched the sweep, read back from Hydra's multirun.yaml, pinned to this sweep dir."""
    record = sweep_dir / "multirun.yaml"
    if not record.is_file():
        raise FileNotFoundError(f"{record} is missing: {sweep_dir} is not a Hydra multirun dir")
    hydra = yaml.safe_load(record.read_text(encoding="utf-8"))["hydra"]
    script = Path(hydra["runtime"]["cwd"]) / f"{hydra['job']['name']}.py"
    hydra_overrides = [o for o in hydra["overrides"]["hydra"] if not o.startswith(("hydra.mode=", "hydra.sweep.dir="))]
    return [
        sys.executable,
        str(script),
        "-m",
        *hydra["overrides"]["task"],
        *hydra_overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]


UNTUNED_KEEPS = ("seed", "batch_size")  # what an untuned cell's figures depend on among trainer.* (held-out loss)


def cell_key(plain_config: dict[str, Any]) -> str:
    """What a cell computes, as a short hash: its config minus bookkeeping; an untuned cell trains nothing, so its
    training keys (steps, learning rate, ...) do not count, and a steps × tuning matrix scores each base once."""
    kept = without_bookkeeping(plain_config)
    if kept.get("adapter", {}).get("method") == AdapterMethod.none:
        kept["trainer"] = {key: kept["trainer"][key] for key in UNTUNED_KEEPS if key in kept.get("trainer", {})}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def done_elsewhere(sweep_dir: Path, out: Path, plain_config: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
    """The results of a cell of this sweep that computes the same as `out` and has finished, copied into `out`;
    else None, and `out` becomes that cell for the others (which wait for it: one lock per cell key)."""
    sweep_dir, out = sweep_dir.resolve(), out.resolve()  # Hydra's sweep dir may be relative, a job's dir is not
    index = sweep_dir / CELL_INDEX
    index.mkdir(parents=True, exist_ok=True)
    key = cell_key(plain_config)
    with FileLock(str(index / f"{key}.lock")):
        owner_file = index / key
        owner = sweep_dir / owner_file.read_text(encoding="utf-8").strip() if owner_file.is_file() else None
        if owner is not None and owner != out and effective_state(owner) in FINAL_STATES:
            yield _copy_results(owner, out, plain_config)
            return
        owner_file.write_text(str(out.relative_to(sweep_dir)), encoding="utf-8")
        yield None


def _copy_results(owner: Path, out: Path, plain_config: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(plain_config), out / RESOLVED_CONFIG)
    if (owner / EVAL_SUBDIR).is_dir():
        shutil.copytree(owner / EVAL_SUBDIR, out / EVAL_SUBDIR, dirs_exist_ok=True)
    results = _json(owner / RESULTS_FILE) | {"run_dir": str(out), "same_as": str(owner)}
    write_json(out / RESULTS_FILE, results)
    write_status(out, RunState.finished)
    log.info("%s computes what %s did: its results are reused, nothing trains", out, owner)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medtune.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["status", "resume"])
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    if args.action == "status":
        return status(args.sweep_dir)
    try:
        command = resume_command(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"medtune: error: {err}", file=sys.stderr)
        return 2
    print("medtune: " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=Path(command[1]).parent, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
