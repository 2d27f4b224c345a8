"""Re-running a finished sweep costs about what Hydra's own multirun costs: the baseline is the same multirun (same
conf/, same overrides, its own sweep dir) with a task that returns at once.

python bench/bench_sweep_rerun.py multirun/<finished sweep> <the sweep's overrides...>
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOOP = f"""
import hydra
from medtune.config import register_configs
register_configs()
@hydra.main(version_base="1.3", config_path={str(REPO / "conf")!r}, config_name="train")
def main(cfg):
    return 0.0
main()
"""


def seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    sweep, overrides = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as scratch:
        noop = Path(scratch) / "noop.py"
        noop.write_text(NOOP)
        no_summary = "~hydra.callbacks.sweep_summary"  # its cells write no run state
        bare = seconds([sys.executable, str(noop), "-m", *overrides, no_summary, f"hydra.sweep.dir={scratch}/sweep"])
    rerun = seconds([sys.executable, str(REPO / "train.py"), "-m", *overrides, f"hydra.sweep.dir={sweep}"])
    print(f"re-run of the finished sweep {rerun:.1f} s, Hydra's bare multirun {bare:.1f} s: {rerun / bare:.2f}x")


if __name__ == "__main__":
    main()
