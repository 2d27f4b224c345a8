"""What the thin entry scripts share: one clear line for user errors, and multiruns that survive a failed job."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from medtune.console import quiet_request_logs
from medtune.errors import ConfigError, MedtuneError
from medtune.preemption import hand_on
from medtune.run_dir import Preempted, Pruned, holds_study

USER_ERROR_EXIT = 2
FAILED_JOBS_EXIT = 1
CUDA_ALLOC_ENV = "PYTORCH_CUDA_ALLOC_CONF"
CUDA_ALLOC_DEFAULT = "expandable_segments:True"
log = logging.getLogger(__name__)
T = TypeVar("T")
_failed_here: list[int] = []  # jobs of this process's multirun that raised (e.g. refused: a changed config)


def quiet_known_warnings() -> None:
    """Silence the warnings medtune cannot fix by passing other arguments; each says why. Call before importing
    transformers/peft (the entry scripts do, first thing), since bitsandbytes logs its notice at import time."""
    # peft (0.21) itself reads the deprecated `is_gradient_checkpointing` property when it wraps a model
    # (peft_model.py); medtune already uses transformers 5's `activation_checkpointing` names everywhere.
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # bitsandbytes looks for optional 4-bit CPU kernels from the Hugging Face hub (`pip install kernels`), which an
    # offline machine cannot fetch; it then uses its own CPU code, so the notice changes nothing.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def default_cuda_allocator() -> None:
    """Expandable segments unless the user configured the allocator: without them the caching allocator's
    fragmentation alone took the Llama-2-70B QLoRA preset past an 80 GB card (BENCHMARKS.md, issue 13).
    Call before torch initialises CUDA (torch reads the variable then); on a CPU it changes nothing."""
    os.environ.setdefault(CUDA_ALLOC_ENV, CUDA_ALLOC_DEFAULT)


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print `medtune: error: <message>` and exit 2 for errors the user can fix; re-raise bugs."""
    try:
        yield
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or str(err)
        fail(f"config value {key} is required (it is ??? in its YAML): pass {key}=<value> on the command line")
    except MedtuneError as err:
        fail(str(err))


def parse_override(argument: str) -> Any:
    """One command-line override in Hydra's grammar (an Override), or a ConfigError naming it in one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        (override,) = OverridesParser.create().parse_overrides([argument])
    except OverrideParseException as err:
        raise ConfigError(f"cannot parse the override {argument!r}: {str(err).splitlines()[0]}.") from None
    return override


def fail(message: str, status: int = USER_ERROR_EXIT) -> NoReturn:
    """The one line a user error prints, and exit 2 (the scripts and the `medtune` command share it); another
    status for a failure that is not the input's (an unreachable service)."""
    print(f"medtune: error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def run_job(task: Callable[[], T]) -> T | None:
    """Run one Hydra job. In a multirun a failed job (bad cell, out of memory) is recorded and the sweep goes on;
    `SweepSummary` counts the cells per state and sets the exit status when the sweep ends. A preempted job (its
    checkpoint saved) stops the process either way, handing the signal on (submitit's handler requeues the job)."""
    quiet_request_logs()
    try:
        if not _in_multirun():
            with exit_on_user_error():
                return task()
        try:
            return task()
        except Preempted:
            raise
        except Pruned as stop:  # a search's pruner stopped it: its run dir says pruned; not a failure
            log.info("job %s pruned: %s", HydraConfig.get().job.num, stop)
            return None
        except Exception as err:
            job = HydraConfig.get().job.num
            log.error("job %s failed", job, exc_info=not isinstance(err, MedtuneError))  # traceback in the job log
            print(
                f"medtune: error: multirun job {job} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True
            )
            _failed_here.append(job)
            return None
    except Preempted as stop:
        where = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "the run"
        again = "the same command again" if _in_multirun() else f"the same command with resume={where}"
        print(f"medtune: {where} preempted: {stop}. Run {again} to continue.", file=sys.stderr, flush=True)
        hand_on(stop)
        sys.exit(128 + (stop.signum or 15))


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class SweepSummary(Callback):
    """At the end of a multirun: the count of cells per state, the unfinished ones by name, and exit status 0
    only when every cell is done (finished, or pruned by a search)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from medtune.sweep import sweep_cells

        if holds_study(Path(config.hydra.sweep.dir)):
            _end_search(Path(config.hydra.sweep.dir))
            return
        cells = sweep_cells(Path(config.hydra.sweep.dir))
        counts = Counter(str(cell.state) for cell in cells)
        print("medtune: sweep " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())), flush=True)
        unfinished = [cell for cell in cells if not cell.done]
        if _failed_here and not unfinished:
            print(f"medtune: error: job(s) {', '.join(map(str, _failed_here))} failed (above)", file=sys.stderr)
            sys.exit(FAILED_JOBS_EXIT)
        if unfinished:
            lines = "\n".join(
                f"  {cell.name}: {cell.state}{f' ({cell.error})' if cell.error else ''}" for cell in unfinished
            )
            print(
                f"medtune: error: {len(unfinished)} cell(s) did not finish (run the same command again to continue "
                f"them):\n{lines}",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(FAILED_JOBS_EXIT)


def _end_search(sweep_dir: Path) -> None:
    """A search ends like a sweep: a line per study (its counts and best trial), exit 0 only when every study holds
    its n_trials complete-or-pruned trials (its failed trials were asked again and do not count)."""
    from medtune.search.status import best_line, load_studies, study_state

    unfinished = []
    for study in load_studies(sweep_dir):
        state = study_state(study)
        print(f"medtune: search {state.line()}; {best_line(study)}", flush=True)
        unfinished += [] if state.reached else [state.name]
    if unfinished:
        print(
            f"medtune: error: {len(unfinished)} stud(y/ies) short of hydra.sweeper.n_trials ({', '.join(unfinished)}): "
            "run the same command again to continue (failed trials are listed by python -m medtune.sweep status).",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(FAILED_JOBS_EXIT)
