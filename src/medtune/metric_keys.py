"""Every figure's name, as train.py, evaluate.py, the report and W&B write and read it: one home for the keys.

Training writes `train/*`, the held-out loss `eval/loss`, QA figures `eval/<suite>/<metric>` (the untuned base's
scoring before tuning under `eval/<suite>/base_<metric>`), memory `memory/*` and throughput `perf/*`.
"""

from __future__ import annotations

TRAIN_LOSS = "train/loss"  # the last logged step's loss
TRAIN_LOSS_RUN_MEAN = "train/loss_run_mean"  # the Trainer's average over the whole run
TRAIN_GLOBAL_STEP = "train/global_step"
TRAIN_TOKENS_SEEN = "train/tokens_seen"
TRAIN_LEARNING_RATE = "train/learning_rate"
TRAIN_GRAD_NORM = "train/grad_norm"
TRAIN_EPOCH = "train/epoch"
EVAL_LOSS = "eval/loss"  # held-out loss
EVAL_RUNTIME = "eval/runtime"
PEAK_RSS_MB = "memory/peak_rss_mb"
CUDA_MAX_ALLOCATED_MB = "memory/cuda_max_allocated_mb"
CUDA_MAX_RESERVED_MB = "memory/cuda_max_reserved_mb"
TRAIN_RUNTIME_S = "perf/train_runtime_s"
TRAIN_TOKENS_PER_S = "perf/train_tokens_per_s"

BASE_PREFIX = "base_"  # train.py's scoring of the untuned base: eval/<suite>/base_<metric>


def qa_key(suite: str, metric: str, prefix: str = "") -> str:
    """eval/<suite>/<prefix><metric>, e.g. qa_key("demo", "accuracy", BASE_PREFIX) = "eval/demo/base_accuracy"."""
    return f"eval/{suite}/{prefix}{metric}"
