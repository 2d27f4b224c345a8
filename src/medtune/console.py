"""What a researcher sees in the terminal: progress bars, no known-harmless warnings, a closing summary.

Every figure a bar or the summary shows is also in the run dir (metrics.jsonl, results.json, the job log);
the console is for people, the files are for scripts.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medtune.enums import WandbMode
from medtune.metric_keys import EVAL_LOSS, TRAIN_GLOBAL_STEP, TRAIN_RUNTIME_S, TRAIN_TOKENS_PER_S
from medtune.run_dir import (
    METRICS_FILE,
    METRICS_LOG,
    MODEL_SUBDIR,
    PREDICTIONS,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    read_correct,
)

log = logging.getLogger(__name__)

# 1: the libraries' own console output comes back (httpx request lines, W&B's run summary and notices, the
# "Loading weights" bars); README "Quiet by default, verbose on request". Unset: medtune's bars and summaries.
VERBOSE_ENV = "MEDTUNE_VERBOSE"
REQUEST_LOGGERS = ("httpx", "httpx2")  # one INFO line per HTTP request (the openai client sends with httpx2)
LOADING_BAR = "Loading weights"  # transformers 5's per-load bar (core_model_loading)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_request_logs() -> None:
    """httpx's per-request INFO lines off the console and job log (104 of them per API evaluation). Call after Hydra
    configured logging (run_job does): a level Hydra set (`hydra.verbose=httpx2`) or $MEDTUNE_VERBOSE keeps them."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if verbose():
            logger.setLevel(logging.INFO)
        elif logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def quiet_loading_bars() -> None:
    """transformers' "Loading weights" bar off (the hub's download bars stay: a 14 GB download needs one), via its
    public tqdm hook; $MEDTUNE_VERBOSE keeps it. Imports transformers: call where models load."""
    from transformers.utils import logging as hf_logging

    def hook(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hide = kwargs.get("desc") == LOADING_BAR and not verbose()
        return factory(*args, **(kwargs | {"disable": True} if hide else kwargs))

    hf_logging.set_tqdm_hook(hook)


def bar(total: int, desc: str, unit: str, leave: bool = True, initial: int = 0) -> tqdm:
    """One style for every medtune progress bar (stderr, so stdout stays parseable)."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=sys.stderr)


def training_summary(results: dict[str, Any], suite: str) -> str:
    """The lines train.py prints when a run ends: what it achieved and where everything is (all from results.json)."""
    out = Path(results["run_dir"])
    lines = [f"medtune: run finished in {out}"]
    accuracy = _accuracy_line(results, out, suite)
    if accuracy:
        lines.append(accuracy)
    if EVAL_LOSS in results:
        lines.append(f"  held-out loss    {results[EVAL_LOSS]:.4f}")
    if TRAIN_GLOBAL_STEP in results:
        lines.append(
            f"  training         {results[TRAIN_GLOBAL_STEP]} steps, {results[TRAIN_RUNTIME_S]:.1f} s, "
            f"{results[TRAIN_TOKENS_PER_S]:,.0f} tokens/s"
            + (f" (packing: {results['packing']})" if "packing" in results else "")
        )
    if (out / MODEL_SUBDIR).is_dir():
        lines.append(f"  model            {out / MODEL_SUBDIR}")
    lines.append(f"  results          {out / RESULTS_FILE}  (every logged figure: {out / METRICS_LOG})")
    lines += _wandb_lines(results)
    return "\n".join(lines)


def _accuracy_line(results: dict[str, Any], out: Path, suite: str) -> str | None:
    """base → tuned accuracy with 95 % bootstrap CIs and McNemar's p, from the saved predictions."""
    from medtune.stats import mcnemar_by_question

    base, tuned = read_correct(out / PREDICTIONS["base"]), read_correct(out / PREDICTIONS["tuned"])
    if not base:
        return None
    line = f"  {suite + ' accuracy':<17}{_with_ci(base)}"
    if tuned and tuned.keys() == base.keys():
        test = mcnemar_by_question(base, tuned)
        line += f" → {_with_ci(tuned)}  McNemar p = {test.p_value:.2g} (+{test.gains} / −{test.losses})"
    return line + f"  on {len(base)} questions, 95 % CI"


def _with_ci(correct: dict[str, bool]) -> str:
    from medtune.stats import bootstrap_ci

    low, high = bootstrap_ci(list(correct.values()))
    return f"{sum(correct.values()) / len(correct):.3f} [{low:.3f}, {high:.3f}]"


def evaluation_summary(metrics: dict[str, Any], out: Path, suite: str, wandb: dict[str, Any]) -> str:
    """The lines evaluate.py prints when it ends, as train.py's: the score and where everything is."""
    correct = read_correct(out / PREDICTIONS_FILE)
    failed = f", {metrics['n_failed']:.0f} without an answer" if metrics.get("n_failed") else ""
    lines = [f"medtune: evaluation finished in {out}"]
    if correct:
        lines.append(f"  {suite + ' accuracy':<17}{_with_ci(correct)}  on {len(correct)} questions{failed}, 95 % CI")
    lines.append(f"  results          {out / METRICS_FILE}  (every answer: {out / PREDICTIONS_FILE})")
    return "\n".join(lines + _wandb_lines(wandb))


def _wandb_lines(results: dict[str, Any]) -> list[str]:
    mode = results.get("wandb/mode", "disabled")
    if mode == WandbMode.disabled:
        return ["  W&B              disabled"]
    files = results["wandb/files"]
    if mode == WandbMode.offline:
        return [f"  W&B (offline)    {files}", f"  upload with      wandb sync {files}"]
    return [f"  W&B              {results['wandb/url']}  (files: {files})"]
