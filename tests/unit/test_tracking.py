"""Tracking helpers: metric names, per-read memory peaks, the online → offline fallback."""

from __future__ import annotations

import sys

import pytest

from medtune.config import WandbConfig
from medtune.tracking import _metric_name, memory_metrics, start_wandb_run

from wandb_records import offline_runs


def test_trainer_log_keys_map_to_medtune_metric_names():
    assert _metric_name("loss") == "train/loss"
    assert _metric_name("grad_norm") == "train/grad_norm"
    assert _metric_name("eval_loss") == "eval/loss"
    assert _metric_name("eval_runtime") == "eval/runtime"
    assert _metric_name("train_runtime") == "train/runtime"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak reset uses /proc/self/clear_refs")
def test_peak_rss_is_reset_on_each_read():
    memory_metrics()
    block = b"x" * (400 * 2**20)  # written pages: 400 MiB resident
    with_block = memory_metrics()["memory/peak_rss_mb"]
    del block
    memory_metrics()  # this window still began with the block resident
    after = memory_metrics()["memory/peak_rss_mb"]
    assert with_block - after > 300


def test_failed_online_init_falls_back_to_offline_with_the_same_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: online init must fail
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "10")
    wb = WandbConfig(mode="online", project="medtune-test")
    run = start_wandb_run(wb, tmp_path, {"a": 1}, tags=["t"], group="g", name="n", job_type="train")
    run.log({"train/loss": 1.0}, step=1)
    run.finish()
    assert "Continuing in OFFLINE mode" in caplog.text
    [record] = offline_runs(tmp_path)
    assert record.run_id == (tmp_path / "wandb_run_id.txt").read_text()
    assert record.history[0]["train/loss"] == 1.0
