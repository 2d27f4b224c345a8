"""What a researcher sees in the terminal: progress bars, no known-harmless warnings, a closing summary.

Every figure a bar or the summary shows is also in the run dir (metrics.jsonl, results.json, the job log);
the console is for people, the files are for scripts.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def bar(total: int, desc: str, unit: str, leave: bool = True, initial: int = 0) -> tqdm:
    """One style for every medtune progress bar (stderr, so stdout stays parseable)."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=sys.stderr)


def training_summary(results: dict[str, Any], suite: str) -> str:
    """The lines train.py prints when a run ends: what it achieved and where everything is (all from results.json)."""
    from medtune.models import MODEL_SUBDIR

    out = Path(results["run_dir"])
    lines = [f"medtune: run finished in {out}"]
    accuracy = _accuracy_line(results, out, suite)
    if accuracy:
        lines.append(accuracy)
    if "eval/loss" in results:
        lines.append(f"  held-out loss    {results['eval/loss']:.4f}")
    if "train/global_step" in results:
        lines.append(
            f"  training         {results['train/global_step']} steps, {results['perf/train_runtime_s']:.1f} s, "
            f"{results['perf/train_tokens_per_s']:,.0f} tokens/s"
            + (f" (packing: {results['packing']})" if "packing" in results else "")
        )
    if (out / MODEL_SUBDIR).is_dir():
        lines.append(f"  model            {out / MODEL_SUBDIR}")
    lines.append(f"  results          {out / 'results.json'}  (every logged figure: {out / 'metrics.jsonl'})")
    lines += _wandb_lines(results)
    return "\n".join(lines)


def _accuracy_line(results: dict[str, Any], out: Path, suite: str) -> str | None:
    """base → tuned accuracy with 95 % bootstrap CIs and McNemar's p, from the saved predictions."""
    from medtune.report.records import PREDICTIONS, read_correct
    from medtune.stats import bootstrap_ci, mcnemar_by_question

    base, tuned = read_correct(out / PREDICTIONS["base"]), read_correct(out / PREDICTIONS["tuned"])
    if not base:
        return None

    def with_ci(correct: dict[str, bool]) -> str:
        low, high = bootstrap_ci(list(correct.values()))
        return f"{sum(correct.values()) / len(correct):.3f} [{low:.3f}, {high:.3f}]"

    line = f"  {suite + ' accuracy':<17}{with_ci(base)}"
    if tuned and tuned.keys() == base.keys():
        test = mcnemar_by_question(base, tuned)
        line += f" → {with_ci(tuned)}  McNemar p = {test.p_value:.2g} (+{test.gains} / −{test.losses})"
    return line + f"  on {len(base)} questions, 95 % CI"


def _wandb_lines(results: dict[str, Any]) -> list[str]:
    mode = results.get("wandb/mode", "disabled")
    if mode == "disabled":
        return ["  W&B              disabled"]
    files = results["wandb/files"]
    if mode == "offline":
        return [f"  W&B (offline)    {files}", f"  upload with      wandb sync {files}"]
    return [f"  W&B              {results['wandb/url']}  (files: {files})"]
