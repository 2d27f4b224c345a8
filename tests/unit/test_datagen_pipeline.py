"""generate_data's run in-process against the local OpenAI-compatible server: faults, resume, reparse, stops."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from medtune.api_client import ApiFailed, ApiStopped, TokenBucket
from medtune.datagen.pipeline import run
from medtune.errors import ConfigError, DataError
from medtune.testing import Fault, OpenAIServer, unused_base_url
from medtune.testing.qa_pairs import qa_responder

from helpers import small_generate

SECRET = "sk-test-SECRET-9f8e7d"
CHUNKS = 8  # 24 corpus lines, 3 per chunk


@pytest.fixture
def generate_cfg(corpus: Path, server: OpenAIServer, tmp_path: Path, compose_config) -> Callable[..., DictConfig]:
    """The real conf/generate_data.yaml, shrunk and pointed at the test server and a temp output_dir."""
    small = [*small_generate(corpus, server.base_url), "wandb.mode=disabled", f"output_dir={tmp_path / 'out'}"]
    return lambda *overrides: compose_config("generate_data", *small, *overrides)


def _all_output_text(out: Path) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*") if p.is_file())


def test_transient_faults_are_retried_and_every_attempt_is_logged(generate_cfg, server, tmp_path) -> None:
    server.fail_next(
        Fault.rate_limit(retry_after=0.3), Fault.server_error(), Fault.malformed(), Fault.hang(30), Fault.truncate()
    )
    manifest = run(generate_cfg("generator.timeout_s=0.5", "generator.concurrency=1"), tmp_path / "hydra")
    assert manifest["funnel"]["chunks_answered"] == CHUNKS
    assert manifest["calls"] == {"attempts": CHUNKS + 4, "ok": CHUNKS, "retry": 4, "gave_up": 0} | {
        "refused": 0,
        "stopped": 0,
    }
    assert manifest["rejected_by_reason"].get("truncated") == 1
    first, second = server.calls[0], server.calls[1]
    assert first.fault == "rate_limit" and second.body == first.body
    assert second.started - first.started >= 0.3  # Retry-After honoured before the retry
    funnel = manifest["funnel"]
    assert funnel["kept"] == funnel["pairs_parsed"] - funnel["rejected"] - funnel["deduplicated"]
    assert funnel["kept"] == len((tmp_path / "out" / "records.jsonl").read_text(encoding="utf-8").splitlines())


def test_rerun_pays_nothing_twice_and_reparse_is_byte_identical(generate_cfg, server, tmp_path) -> None:
    run(generate_cfg(), tmp_path / "hydra")
    records = (tmp_path / "out" / "records.jsonl").read_bytes()
    assert server.request_count == CHUNKS and records
    run(generate_cfg(), tmp_path / "hydra")
    assert server.request_count == CHUNKS  # every chunk's reply was already in the raw log
    (tmp_path / "out" / "records.jsonl").unlink()
    manifest = run(generate_cfg("reparse=true", "generator.base_url=http://127.0.0.1:9/v1"), tmp_path / "hydra")
    assert (tmp_path / "out" / "records.jsonl").read_bytes() == records
    assert manifest["generation_seconds"] is None and server.request_count == CHUNKS


def test_exhausted_quota_stops_cleanly_keeps_finished_work_and_never_leaks_the_key(
    generate_cfg, server, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.responder = lambda req: Fault.quota() if server.request_count > 3 else qa_responder(req)
    with pytest.raises(ApiStopped, match="quota") as stopped:
        run(generate_cfg("generator.concurrency=1"), tmp_path / "hydra")
    out = tmp_path / "out"
    assert len((out / "records.jsonl").read_text(encoding="utf-8").splitlines()) > 0  # 3 chunks' pairs kept
    assert server.request_count == 4  # stopped at once: quota errors are not retried
    assert server.calls[0].api_key == SECRET  # the key was used...
    assert SECRET not in str(stopped.value) and SECRET not in _all_output_text(out)  # ...and written nowhere


def test_a_refused_key_stops_with_a_message_naming_the_variable(generate_cfg, server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.fail_next(Fault.unauthorized())
    with pytest.raises(ApiStopped, match=r"refused the key in \$OPENAI_API_KEY") as stopped:
        run(generate_cfg("generator.concurrency=1"), tmp_path / "hydra")
    assert server.request_count == 1 and SECRET not in repr(stopped.value)
    assert json.loads((tmp_path / "out" / "run_status.json").read_text())["status"] == "failed"


def test_nothing_listening_stops_in_seconds_and_marks_the_run_failed(generate_cfg, tmp_path) -> None:
    url = unused_base_url()
    started = time.monotonic()
    with pytest.raises(ApiStopped, match=f"nothing answers at {url} — is the server running"):
        run(generate_cfg(f"generator.base_url={url}"), tmp_path / "hydra")
    assert time.monotonic() - started < 10  # generous; about 0.1 s here
    status = json.loads((tmp_path / "out" / "run_status.json").read_text())
    assert status["status"] == "failed" and "nothing answers" in status["error"]


def test_every_chunk_refused_keeps_nothing_and_fails_with_the_reason(generate_cfg, server, tmp_path) -> None:
    server.responder = lambda request: Fault.context_length()
    with pytest.raises(ApiFailed, match=f"kept nothing: all {CHUNKS} chunks failed .*context length exceeded"):
        run(generate_cfg(), tmp_path / "hydra")
    assert server.request_count == CHUNKS  # a refusal is not retried, and does not stop the others


def test_replies_that_give_no_pair_fail_the_run_naming_the_first_reject_reasons(generate_cfg, server, tmp_path) -> None:
    server.responder = lambda request: "申し訳ありませんが、この文章からは質問を作れません。"
    with pytest.raises(ApiFailed, match=rf"kept nothing from {CHUNKS} answered chunks .*first rejects: c\S* no_pairs"):
        run(generate_cfg(), tmp_path / "hydra")
    assert json.loads((tmp_path / "out" / "run_status.json").read_text())["status"] == "failed"


def test_the_token_limit_and_sampling_parameters_follow_the_server(generate_cfg, tmp_path) -> None:
    with OpenAIServer(qa_responder, token_limit_params=("max_completion_tokens",)) as strict:
        overrides = ("generator.token_limit_param=max_completion_tokens", "generator.temperature=null")
        manifest = run(generate_cfg(f"generator.base_url={strict.base_url}", *overrides), tmp_path / "hydra")
        calls = strict.calls
    assert manifest["funnel"]["kept"] > 0 and {c.token_limit_param for c in calls} == {"max_completion_tokens"}
    assert not any("temperature" in c.body for c in calls) and {c.body["top_p"] for c in calls} == {1.0}


def test_dry_run_counts_requests_and_cost_without_calls(generate_cfg, server, tmp_path) -> None:
    plan = run(generate_cfg("dry_run=true", "generator.pricing.input_per_1m=1.0"), tmp_path / "hydra")
    assert server.request_count == 0
    assert plan["requests"] == CHUNKS and plan["estimated_cost_usd"] > 0
    assert (tmp_path / "out" / "plan.json").exists() and not (tmp_path / "out" / "records.jsonl").exists()
    run(generate_cfg(), tmp_path / "hydra")
    assert run(generate_cfg("dry_run=true"), tmp_path / "hydra")["requests"] == 0


def test_decontamination_removes_records_like_an_eval_question(generate_cfg, tmp_path) -> None:
    exam = tmp_path / "exam.jsonl"
    exam.write_text(
        '{"problem_id": "Q1", "problem_text": "動悸を主訴に来院した心房細動の患者で、まず確認することは何か。", '
        '"choices": ["a", "b"], "answer": ["a"]}\n',
        encoding="utf-8",
    )
    eval_sets = f"decontamination.eval_sets=[{{suite: exam, source: jsonl, path: '{exam}'}}]"
    manifest = run(generate_cfg(eval_sets), tmp_path / "hydra")
    matches = manifest["decontamination"]["matches"]
    assert [m["question"] for m in matches] == ["exam/Q1"]
    assert "動悸" in matches[0]["instruction"] and manifest["funnel"]["decontaminated"] == 1
    assert matches[0]["id"] not in (tmp_path / "out" / "records.jsonl").read_text(encoding="utf-8")


def test_user_errors_are_named_before_any_call(generate_cfg, server, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$OPENAI_API_KEY"):
        run(generate_cfg("generator.base_url=https://api.example.com/v1"), tmp_path / "hydra")
    template = tmp_path / "prompt.txt"
    template.write_text("質問を作って", encoding="utf-8")
    with pytest.raises(DataError, match=r"prompt.txt.*\{passage\}"):
        run(generate_cfg(f"prompt.template_path={template}"), tmp_path / "hydra")
    with pytest.raises(ConfigError, match="output_dir"):
        run(generate_cfg("reparse=true", "output_dir=null"), tmp_path / "hydra")
    assert server.request_count == 0


def test_token_bucket_holds_the_average_rate() -> None:
    async def take(n: int) -> float:
        bucket = TokenBucket(per_minute=1200)  # 20 per second, one second of burst
        started = time.monotonic()
        for _ in range(n):
            await bucket.take(1)
        return time.monotonic() - started

    assert asyncio.run(take(30)) >= 0.45  # 20 from the burst, then 10 more at 20/s
