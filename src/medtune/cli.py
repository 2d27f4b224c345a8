"""What the thin entry scripts share: one clear line for user errors, and multiruns that survive a failed job."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from medtune.errors import MedtuneError

USER_ERROR_EXIT = 2
FAILED_JOBS_EXIT = 1
CUDA_ALLOC_ENV = "PYTORCH_CUDA_ALLOC_CONF"
CUDA_ALLOC_DEFAULT = "expandable_segments:True"
log = logging.getLogger(__name__)
T = TypeVar("T")


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
        _fail(f"config value {key} is required (it is ??? in its YAML): pass {key}=<value> on the command line")
    except MedtuneError as err:
        _fail(str(err))


def _fail(message: str) -> None:
    print(f"medtune: error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT)


def run_job(task: Callable[[], T]) -> T | None:
    """Run one Hydra job. In a multirun a failed job (bad cell, out of memory) is recorded and the sweep goes on;
    `MultirunFailures` reports the failed jobs and sets the exit status when the sweep ends."""
    if not _in_multirun():
        with exit_on_user_error():
            return task()
    try:
        return task()
    except Exception as err:
        job = HydraConfig.get().job.num
        log.error("job %s failed", job, exc_info=not isinstance(err, MedtuneError))  # full traceback in the job log
        print(f"medtune: error: multirun job {job} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return None


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class MultirunFailures(Callback):
    """At the end of a multirun, list the jobs whose run_status.json says failed and exit non-zero."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        failed = sorted(  # rglob: an override holding a path (eval.path=/data/x) nests the job's dir
            (path.relative_to(sweep).parts[0], status.get("error", ""))
            for path in sweep.rglob("run_status.json")
            if (status := json.loads(path.read_text())).get("status") == "failed"
        )
        if failed:
            lines = "\n".join(f"  {name}: {error}" for name, error in failed)
            print(f"medtune: error: {len(failed)} multirun job(s) failed:\n{lines}", file=sys.stderr, flush=True)
            sys.exit(FAILED_JOBS_EXIT)
