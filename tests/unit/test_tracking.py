"""Tracking helpers: metric names, per-read memory peaks, the online → offline fallback."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medtune.config import WandbConfig
from medtune.tracking import memory_metrics, metric_name, start_wandb_run

from wandb_records import offline_runs


def test_trainer_log_keys_map_to_medtunemetric_names():
    assert metric_name("loss") == "train/loss"
    assert metric_name("grad_norm") == "train/grad_norm"
    assert metric_name("eval_loss") == "eval/loss"
    assert metric_name("eval_runtime") == "eval/runtime"
    assert metric_name("train_runtime") == "train/runtime"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak reset uses /proc/self/clear_refs")
def test_peak_rss_is_reset_on_each_read():
    memory_metrics()
    block = b"x" * (400 * 2**20)  # written pages: 400 MiB resident
    with_block = memory_metrics()["memory/peak_rss_mb"]
    del block
    memory_metrics()  # this window still began with the block resident
    after = memory_metrics()["memory/peak_rss_mb"]
    assert with_block - after > 300


class RejectingWandbServer(BaseHTTPRequestHandler):
    """A W&B server on 127.0.0.1 that refuses every request, as the real one does with a bad key."""

    def _reject(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "unauthorized"}]}')

    do_GET = do_POST = _reject

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def rejecting_wandb_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RejectingWandbServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_failed_online_init_falls_back_to_offline_with_the_same_run(
    tmp_path, monkeypatch, caplog, rejecting_wandb_server
):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", rejecting_wandb_server)
    wb = WandbConfig(mode="online", project="medtune-test")
    run = start_wandb_run(wb, tmp_path, {"a": 1}, tags=["t"], group="g", name="n", job_type="train")
    run.log({"train/loss": 1.0}, step=1)
    run.finish()
    assert "Continuing in OFFLINE mode" in caplog.text
    [record] = offline_runs(tmp_path)
    assert record.run_id == (tmp_path / "wandb_run_id.txt").read_text()
    assert record.history[0]["train/loss"] == 1.0
