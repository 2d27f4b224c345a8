"""generator.batch=true in-process against the loopback server's Batch API: same records as live requests at the
batch price, reattaching after a kill, an expired batch, failed lines, resume, and a server without the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from medtune.api_client import ApiStopped
from medtune.datagen import batch
from medtune.datagen.pipeline import run
from medtune.errors import ConfigError, DataError
from medtune.run_dir import API_BATCHES_FILE
from medtune.testing import Fault, OpenAIServer
from medtune.testing.qa_pairs import qa_responder, synthetic_corpus

from helpers import small_generate

CHUNKS = 8  # 24 corpus lines, 3 per chunk


@pytest.fixture
def batch_cfg(corpus: Path, server: OpenAIServer, tmp_path: Path, compose_config) -> Callable[..., DictConfig]:
    """The real conf/generate_data.yaml with generator.batch=true (quick polls, a price), output in tmp_path/<out>."""
    small = [*small_generate(corpus, server.base_url), "wandb.mode=disabled", "generator.batch_poll_s=0.01"]
    priced = ["generator.pricing.input_per_1m=1.0", "generator.pricing.output_per_1m=2.0"]

    def compose(*overrides: str, out: str = "out", batch: bool = True) -> DictConfig:
        where = [f"output_dir={tmp_path / out}", f"generator.batch={batch}"]
        return compose_config("generate_data", *small, *priced, *where, *overrides)

    return compose


def _jobs(out: Path) -> list[dict]:
    return json.loads((out / API_BATCHES_FILE).read_text(encoding="utf-8"))["jobs"]


def _input_lines(server: OpenAIServer, number: int) -> list[dict]:
    text = server.batch_store.file_text(server.batches[number]["input_file_id"])
    return [json.loads(line) for line in text.splitlines()]


def test_a_batch_gives_the_live_records_at_the_batch_price_and_a_rerun_pays_nothing(batch_cfg, server, tmp_path):
    live = run(batch_cfg(out="live", batch=False), tmp_path / "hydra")
    live_bodies = sorted(json.dumps(call.body, sort_keys=True) for call in server.calls)
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert (tmp_path / "out" / "records.jsonl").read_bytes() == (tmp_path / "live" / "records.jsonl").read_bytes()
    assert len(server.batches) == 1 and server.request_count == 2 * CHUNKS  # each chunk answered once per run
    lines = _input_lines(server, 0)
    assert sorted(json.dumps(line["body"], sort_keys=True) for line in lines) == live_bodies  # as live requests send
    assert {line["url"] for line in lines} == {"/v1/chat/completions"} and lines[0]["method"] == "POST"
    assert manifest["tokens"] == live["tokens"] and manifest["batched_attempts"] == CHUNKS
    assert manifest["cost_usd"] == pytest.approx(live["cost_usd"] * 0.5, abs=1e-6) and live["cost_usd"] > 0
    assert _jobs(tmp_path / "out") == [
        {"requests": CHUNKS, "input_file_id": lines and server.batches[0]["input_file_id"],
         "batch_id": server.batches[0]["id"], "status": "completed", "collected": True}
    ]  # fmt: skip
    assert manifest["batches"] == _jobs(tmp_path / "out") and live["batches"] == []
    run(batch_cfg(), tmp_path / "hydra")
    assert len(server.batches) == 1 and server.request_count == 2 * CHUNKS  # nothing sent again


def test_a_killed_wait_reattaches_to_its_batch_even_when_the_kill_came_before_its_id_was_saved(
    batch_cfg, server, tmp_path, monkeypatch
):
    server.hold_batches()

    def killed(seconds: float) -> None:
        raise KeyboardInterrupt  # the process dies while it waits for the batch

    with monkeypatch.context() as patch:
        patch.setattr(batch.time, "sleep", killed)
        with pytest.raises(KeyboardInterrupt):
            run(batch_cfg(), tmp_path / "hydra")
    out = tmp_path / "out"
    jobs = _jobs(out)
    assert jobs[0]["batch_id"] == server.batches[0]["id"] and not jobs[0]["collected"]
    (out / API_BATCHES_FILE).write_text(json.dumps({"jobs": [jobs[0] | {"batch_id": None}]}))  # killed before saving
    server.release_batches()
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert len(server.batches) == 1 and len(server.batch_store.uploads) == 1  # found by its input file
    assert manifest["funnel"]["chunks_answered"] == CHUNKS and server.request_count == CHUNKS


def test_an_expired_batch_keeps_its_answers_and_sends_only_the_rest_as_a_new_batch(batch_cfg, server, tmp_path):
    server.expire_next_batch(after=3)
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert [b["status"] for b in server.batches] == ["expired", "completed"]
    assert [b["request_counts"]["total"] for b in server.batches] == [CHUNKS, CHUNKS - 3]
    first_keys = {line["custom_id"] for line in _input_lines(server, 0)[:3]}
    assert not first_keys & {line["custom_id"] for line in _input_lines(server, 1)}
    assert manifest["funnel"]["chunks_answered"] == CHUNKS and server.request_count == CHUNKS  # none paid twice
    assert manifest["calls"]["gave_up"] == manifest["calls"]["refused"] == 0  # an expired line is no failure


def test_a_batch_that_expires_with_nothing_done_stops_with_a_way_on(batch_cfg, server, tmp_path):
    server.expire_next_batch(after=0)
    with pytest.raises(ApiStopped, match=r"expired before any of its 8 requests.*generator\.batch=false"):
        run(batch_cfg(), tmp_path / "hydra")
    manifest = run(batch_cfg("generator.batch=false"), tmp_path / "hydra")  # the rest live, same raw log
    assert manifest["funnel"]["chunks_answered"] == CHUNKS and manifest["batched_attempts"] == 0


def test_failed_lines_are_failures_with_their_error_and_the_next_run_asks_them_again(batch_cfg, server, tmp_path):
    too_long = synthetic_corpus(24).splitlines()[4]  # a line of the second chunk
    server.responder = lambda req: Fault.context_length() if too_long in str(req) else qa_responder(req)
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert len(server.batches) == 1 and manifest["calls"]["refused"] == 1
    assert manifest["funnel"]["chunks_answered"] == CHUNKS - 1
    raw = [json.loads(line) for line in (tmp_path / "out" / "raw_responses.jsonl").read_text().splitlines()]
    refused = [entry for entry in raw if entry["status"] == "refused"]
    assert len(refused) == 1 and "context length exceeded" in refused[0]["error"] and refused[0]["http_status"] == 400
    server.responder = qa_responder
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert [b["request_counts"]["total"] for b in server.batches] == [CHUNKS, 1]
    assert manifest["funnel"]["chunks_answered"] == CHUNKS


def test_chunks_answered_live_are_not_sent_in_the_batch(batch_cfg, server, tmp_path):
    server.responder = lambda req: Fault.quota() if server.request_count > 3 else qa_responder(req)
    with pytest.raises(ApiStopped, match="quota"):
        run(batch_cfg(batch=False), tmp_path / "hydra")
    server.responder = qa_responder
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert server.batches[0]["request_counts"]["total"] == CHUNKS - 3
    assert manifest["funnel"]["chunks_answered"] == CHUNKS and manifest["batched_attempts"] == CHUNKS - 3


def test_a_long_plan_is_split_at_the_batch_size_limit(batch_cfg, server, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "MAX_REQUESTS", 3)
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert [b["request_counts"]["total"] for b in server.batches] == [3, 3, 2]
    assert manifest["funnel"]["chunks_answered"] == CHUNKS and server.request_count == CHUNKS


def test_a_server_without_the_batch_api_stops_with_one_line_before_any_call(corpus, tmp_path, compose_config):
    with OpenAIServer(qa_responder, batch_api=False) as server:
        cfg = compose_config(
            "generate_data", *small_generate(corpus, server.base_url), "wandb.mode=disabled",
            f"output_dir={tmp_path / 'out'}", "generator.batch=true",
        )  # fmt: skip
        with pytest.raises(ApiStopped, match=r"has no Batch API .*set generator.batch=false"):
            run(cfg, tmp_path / "hydra")
        assert server.request_count == 0


def test_dry_run_estimates_the_batch_price(batch_cfg, server, tmp_path):
    live = run(batch_cfg("dry_run=true", batch=False), tmp_path / "hydra")
    batched = run(batch_cfg("dry_run=true"), tmp_path / "hydra")
    assert batched["estimated_cost_usd"] == pytest.approx(live["estimated_cost_usd"] / 2, abs=1e-4)
    assert live["estimated_cost_usd"] > 0
    assert batched["batch"] and server.request_count == 0 and not server.batches


def test_a_poll_interval_of_zero_is_refused_at_composition(batch_cfg, server, tmp_path):
    with pytest.raises(ConfigError, match=r"generator.batch_poll_s=0.0 is out of range"):
        run(batch_cfg("generator.batch_poll_s=0"), tmp_path / "hydra")
    assert not server.batches and not (tmp_path / "out").exists()


def test_a_batch_refused_at_validation_stops_with_its_reason_and_the_rerun_submits_anew(batch_cfg, server, tmp_path):
    server.refuse_next_batch("Enqueued token limit reached for test-model.")
    with pytest.raises(ApiStopped, match=r"refused batch batch_\d+ \(Enqueued token limit reached"):
        run(batch_cfg(), tmp_path / "hydra")
    assert server.request_count == 0 and _jobs(tmp_path / "out")[0]["status"] == "failed"
    manifest = run(batch_cfg(), tmp_path / "hydra")
    assert [b["status"] for b in server.batches] == ["failed", "completed"]
    assert manifest["funnel"]["chunks_answered"] == CHUNKS and server.request_count == CHUNKS


def test_a_damaged_batch_file_is_named_before_any_upload(batch_cfg, server, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / API_BATCHES_FILE).write_text('{"jobs": [{"batch": "x"}]}', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{API_BATCHES_FILE}.*not a batch job list"):
        run(batch_cfg(), tmp_path / "hydra")
    assert not server.batch_store.uploads and server.request_count == 0
