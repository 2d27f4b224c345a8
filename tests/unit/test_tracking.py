"""Tracking helpers: metric names, per-read memory peaks, the online → offline fallback, W&B settings precedence,
metrics.jsonl."""

from __future__ import annotations

import functools
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import wandb

from medtune.config import WandbConfig
from medtune.errors import ConfigError
from medtune.tracking import (
    METRICS_LOG,
    memory_metrics,
    metric_name,
    read_metrics_log,
    resolve_wandb,
    start_wandb_run,
)

from wandb_records import finished_offline_runs


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
    # W&B reads WANDB_BASE_URL and WANDB_API_KEY once per process: after an earlier test's W&B run it would ignore
    # them and retry its default host until init_timeout (8.8 s in the suite), never asking this server. The Settings
    # that start_wandb_run builds carry them instead, so the refusal is the server's, answered at once, whatever ran
    # before; init_timeout=8 (90 s by default) only bounds a W&B that would retry it.
    settings = {"base_url": rejecting_wandb_server, "api_key": "x" * 40, "init_timeout": 8}
    monkeypatch.setattr(wandb, "Settings", functools.partial(wandb.Settings, **settings))
    wb = WandbConfig(mode="online", project="medtune-test")
    run = start_wandb_run(wb, tmp_path, {"a": 1}, tags=["t"], group="g", name="n", job_type="train")
    run.log({"train/loss": 1.0}, step=1)
    run.finish()
    assert "Continuing in OFFLINE mode" in caplog.text
    assert "unauthorized" in caplog.text  # this server's refusal, not a timeout on another host
    [record] = finished_offline_runs(tmp_path)
    assert record.run_id == (tmp_path / "wandb_run_id.txt").read_text()
    assert record.history[0]["train/loss"] == 1.0


ENV = {
    "WANDB_MODE": "disabled",
    "WANDB_PROJECT": "env-project",
    "WANDB_ENTITY": "env-team",
    "WANDB_DIR": "/env/dir",
    "WANDB_RUN_GROUP": "env-group",
    "WANDB_TAGS": "env-a, env-b",
}


def _resolve(wb: WandbConfig, env: dict[str, str]):
    return resolve_wandb(wb, Path("/run"), group="demo", name="auto-name", tags=["lora"], env=env)


def test_wandb_settings_left_null_come_from_the_environment():
    s = _resolve(WandbConfig(), ENV)
    assert (s.mode, s.project, s.entity, s.dir, s.group) == (
        "disabled",
        "env-project",
        "env-team",
        Path("/env/dir"),
        "env-group",
    )
    assert s.tags == ["env-a", "env-b", "lora"]  # added to medtune's own tags


def test_a_config_value_beats_the_environment():
    wb = WandbConfig(mode="offline", project="cfg", entity="me", dir="/cfg", group="g", tags=["x"])
    s = _resolve(wb, ENV)
    assert (s.mode, s.project, s.entity, s.dir, s.group, s.tags) == (
        "offline",
        "cfg",
        "me",
        Path("/cfg"),
        "g",
        ["lora", "x"],
    )


def test_without_config_or_environment_runs_are_offline_in_the_run_dir():
    s = _resolve(WandbConfig(), {})
    assert (s.mode, s.project, s.entity, s.dir, s.group, s.name) == (
        "offline",
        "medtune",
        None,
        Path("/run"),
        "demo",
        "auto-name",
    )


def test_an_unknown_wandb_mode_in_the_environment_is_one_clear_error():
    with pytest.raises(ConfigError, match="WANDB_MODE='dryrun' is not one of offline, online, disabled"):
        _resolve(WandbConfig(), {"WANDB_MODE": "dryrun"})


def test_the_command_line_beats_the_environment_through_the_composed_config(compose_config, monkeypatch, tmp_path):
    from medtune.config import to_train_config

    monkeypatch.setenv("WANDB_MODE", "disabled")
    default = to_train_config(compose_config("train")).wandb
    given = to_train_config(compose_config("train", "wandb.mode=online", "wandb.project=p")).wandb
    assert _resolve(default, dict(os.environ)).mode == "disabled"
    assert (_resolve(given, dict(os.environ)).mode, given.project) == ("online", "p")


def test_every_logged_scalar_is_appended_to_metrics_jsonl_and_a_resumed_run_appends(tmp_path):
    def start():
        return start_wandb_run(WandbConfig(mode="disabled"), tmp_path, {}, tags=[], group="g", name="n", job_type="t")

    run = start()
    run.log({"train/loss": 2.0, "text": "not a figure", "flag": True}, step=1)
    run.finish()
    with (tmp_path / METRICS_LOG).open("a") as handle:
        handle.write('{"train/loss": 1.')  # the first attempt was killed in the middle of a line
    resumed = start()
    resumed.log({"train/loss": 1.0}, step=2)
    resumed.finish()
    rows = read_metrics_log(tmp_path / METRICS_LOG)
    assert [(r["train/global_step"], r["train/loss"]) for r in rows] == [(1, 2.0), (2, 1.0)]
    assert "text" not in rows[0] and "flag" not in rows[0]


def test_under_wandb_agent_the_agents_run_id_is_the_runs_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_RUN_ID", "agent123")  # what `wandb agent` hands each run it starts
    start_wandb_run(WandbConfig(mode="disabled"), tmp_path, {}, tags=[], group="g", name="n", job_type="t").finish()
    assert (tmp_path / "wandb_run_id.txt").read_text() == "agent123"
    monkeypatch.setenv("WANDB_RUN_ID", "other")  # a resumed run keeps the id its run dir holds
    start_wandb_run(WandbConfig(mode="disabled"), tmp_path, {}, tags=[], group="g", name="n", job_type="t").finish()
    assert (tmp_path / "wandb_run_id.txt").read_text() == "agent123"
