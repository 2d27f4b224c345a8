"""Stop cleanly when the cluster asks: SIGTERM (`scancel`, `scontrol requeue`, preemption; SIGKILL follows after
SLURM's KillWait) and submitit's timeout/preemption signal (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise).

While the Trainer runs, a signal only raises a flag: the current optimizer step finishes, a checkpoint is saved
(`medtune.training.StopOnSignal`), and the run then ends as preempted. Anywhere else (loading, scoring) the run
stops at once with `Preempted`; its work resumes anyway (scoring is cheap to redo, data generation and API
scoring keep every answer).
`medtune.cli.run_job` turns a `Preempted` into one line and hands the signal on to whoever handled it before
medtune (submitit's handler requeues the job), else exits 128 + signal number.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from medtune.run_dir import Preempted

Handler = Callable[[int, FrameType | None], Any] | int | None


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGTERM and submitit's preemption signal (its SUBMITIT_PREEMPT_SIGNAL variable, USR2 by default)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    usr = getattr(signal, f"SIG{name}", signal.SIGUSR2)
    return tuple(dict.fromkeys((signal.SIGTERM, usr)))


class StopRequest:
    """The signal received, if any, and the handlers medtune replaced (to hand the signal on afterwards)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Handler] = {}
        self.deferred = False  # True while the Trainer runs: stop at the next step end instead of at once

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        if not self.deferred:
            raise self.preempted(f"stopped by {signal.Signals(signum).name}")

    def preempted(self, message: str) -> Preempted:
        return Preempted(message, self.signum, self.previous.get(self.signum or 0))


@contextmanager
def preemptible() -> Iterator[StopRequest]:
    """Route the stop signals to a StopRequest for the block (main thread only; elsewhere nothing changes)."""
    request = StopRequest()
    try:
        for sig in stop_signals():
            request.previous[sig] = signal.signal(sig, request.handle)
    except ValueError:  # not the main thread: leave the signals to whoever owns them
        yield request
        return
    try:
        yield request
    finally:
        for sig, handler in request.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def hand_on(error: Preempted) -> None:
    """Give the signal to the handler medtune replaced (submitit's requeues the job and exits)."""
    if callable(error.previous) and error.signum is not None:
        error.previous(error.signum, None)
