"""SLURM clusters without accounting: how the launching process follows its jobs there.

Hydra's SLURM launcher (submitit) follows each job's state with `sacct`, which reads SLURM's accounting database.
A cluster without one (`AccountingStorageType=accounting_storage/none`: scripts/slurm_one_node.sh, many small
lab clusters) answers every poll with "Slurm accounting storage is disabled", which submitit prints as a
"Bypassing sacct error" warning per poll while the job's state stays UNKNOWN: a job that ends without writing its
result (scancel, a kill) would be waited for for ever. On such a cluster `SlurmJobStates` has submitit ask
`squeue` instead (the controller's own view, which holds finished jobs for MinJobAge seconds) and says so once.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

log = logging.getLogger(__name__)

NO_ACCOUNTING = "accounting_storage/none"
SACCT_COLUMNS = "JobID|State|NodeList"  # the header submitit's parser reads (SlurmInfoWatcher.read_info)
# A job the controller no longer lists ended more than MinJobAge seconds ago; any state outside submitit's
# "incomplete" list makes it stop waiting and report the job's missing result.
LEFT_QUEUE = "ENDED"


def accounting_storage() -> str | None:
    """The cluster's AccountingStorageType (`scontrol show config`), or None when no controller answers."""
    try:
        shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in shown.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip()
    return None


class QueueWatcher(SlurmInfoWatcher):
    """submitit's job-state poller, asking `squeue` in sacct's output format."""

    def _make_command(self) -> list[str] | None:
        sacct = super()._make_command()  # None when every registered job has finished
        if sacct is None:
            return None
        job_ids = ",".join(sacct[sacct.index("-j") + 1 :: 2])
        return ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%N", "-j", job_ids]

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        info = super().read_info(f"{SACCT_COLUMNS}\n{text}")
        gone = {job: {"JobID": job, "State": LEFT_QUEUE} for job in self._registered - self._finished - set(info)}
        return info | gone


class SlurmJobStates(Callback):
    """Hydra callback: before a SLURM multirun submits anything, follow jobs with squeue where sacct cannot."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "SlurmLauncher" not in str(config.hydra.launcher.get("_target_", "")):
            return
        if accounting_storage() != NO_ACCOUNTING:
            return  # sacct works (or no cluster answers, which submitting will say itself)
        if not isinstance(SlurmJob.watcher, QueueWatcher):
            SlurmJob.watcher = QueueWatcher(delay_s=SlurmJob.watcher._delay_s)
        log.info("SLURM accounting is off on this cluster (%s): job states come from squeue, not sacct", NO_ACCOUNTING)
