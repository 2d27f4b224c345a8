"""The shared API client's policy, in-process against the loopback OpenAI-compatible server.

Each fault of issue 10 gets the outcome the README's policy table promises: how long until the clear
error (a bound generous for CI), which message, how many requests were paid, and what the log kept.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from medtune.api_client import (
    ApiConfig,
    ApiStopped,
    Request,
    RequestLog,
    RetryConfig,
    Summary,
    call_all,
    request_key,
    token_limit_name,
)
from medtune.testing import Fault, OpenAIServer, unused_base_url

SECRET = "sk-test-SECRET-5a4b3c"
FAST = RetryConfig(max_attempts=4, budget_s=5.0, backoff_initial_s=0.01, backoff_max_s=0.05, max_retry_after_s=2.0)
CLEAR_ERROR_S = 10.0  # generous: each of these stops in well under a second here


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTUNE_TEST_KEY", SECRET)


def config(base_url: str, **overrides) -> ApiConfig:
    cfg = ApiConfig(model="test-model", base_url=base_url, api_key_env="MEDTUNE_TEST_KEY", timeout_s=2.0, retry=FAST)
    return replace(cfg, **overrides)


def make_requests(n: int) -> list[Request]:
    bodies = [{"model": "test-model", "messages": [{"role": "user", "content": f"Q{i}"}]} for i in range(n)]
    return [Request(request_key(body), f"Q{i}", body) for i, body in enumerate(bodies)]


def asked(request: dict) -> str:
    return request["messages"][-1]["content"]


def run(cfg: ApiConfig, requests: list[Request], log_path: Path) -> tuple[Summary, RequestLog]:
    log = RequestLog(log_path)
    try:
        return call_all(cfg, requests, log, progress=False), log
    finally:
        log.close()


def stopped(cfg: ApiConfig, requests: list[Request], log_path: Path) -> tuple[str, float]:
    """The ApiStopped message and the seconds it took to come."""
    started = time.monotonic()
    with pytest.raises(ApiStopped) as caught:
        run(cfg, requests, log_path)
    message = str(caught.value)
    assert SECRET not in message and SECRET not in repr(caught.value)
    return message, time.monotonic() - started


def test_nothing_listening_stops_after_a_few_connection_failures_naming_the_address(tmp_path):
    url = unused_base_url()
    message, seconds = stopped(config(url), make_requests(20), tmp_path / "log.jsonl")
    assert seconds < CLEAR_ERROR_S
    assert message.startswith(f"nothing answers at {url} — is the server running?")
    entries = RequestLog(tmp_path / "log.jsonl").entries
    assert [e["status"] for e in entries] == ["retry", "retry", "stopped"]  # retry.connect_failures_to_stop=3


def test_a_server_that_never_answers_fails_the_preflight_and_sends_nothing_else(tmp_path):
    with OpenAIServer(fault_for=lambda request, attempt: Fault.hang(30)) as server:
        cfg = config(server.base_url, timeout_s=0.2, retry=replace(FAST, budget_s=0.5))
        message, seconds = stopped(cfg, make_requests(20), tmp_path / "log.jsonl")
        calls = server.calls
    assert seconds < CLEAR_ERROR_S
    assert "the first request" in message and "APITimeoutError" in message and "nothing else was sent" in message
    assert {asked(c.body) for c in calls} == {"Q0"}


def test_a_hung_server_shows_in_the_bar_with_its_address_and_stops_with_a_timeout_message(tmp_path, capsys):
    with OpenAIServer(fault_for=lambda request, attempt: Fault.hang(30)) as server:
        cfg = config(server.base_url, timeout_s=0.6, slow_request_s=0.2, retry=replace(FAST, max_attempts=2))
        with pytest.raises(ApiStopped, match=r"the first request .* failed after its retries \(no reply within 0.6 s"):
            call_all(cfg, make_requests(3), RequestLog(tmp_path / "log.jsonl"), progress=True)
    assert f"waiting 0 s on {server.base_url}" in capsys.readouterr().err  # the bar named the wait before the timeout


def test_connections_dropped_mid_reply_are_retried_server_faults_never_nothing_answers(tmp_path):
    """Every third request loses its connection after the headers (or before any byte): the run finishes."""

    def fault_for(request: dict, attempt: int) -> Fault | None:
        return Fault.drop(after_headers=attempt % 2 == 0) if attempt < 2 and int(asked(request)[1:]) % 3 == 1 else None

    with OpenAIServer(fault_for=fault_for) as server:
        summary, log = run(config(server.base_url, concurrency=4), make_requests(12), tmp_path / "log.jsonl")
        assert server.request_count == 12 + 2 * 4
    assert (summary.done, summary.failed, summary.dropped) == (12, 0, 8)
    errors = [e["error"] for e in log.entries if e["status"] == "retry"]
    assert len(errors) == 8 and all(e.startswith("the server closed the connection") for e in errors)
    assert any("expected" in e for e in errors) and any("without sending a response" in e for e in errors)
    assert "8 connections closed by the server mid-reply (retried)" in summary.line("x")


def test_a_server_dropping_every_connection_stops_naming_dropped_connections(tmp_path):
    with OpenAIServer(lambda request: Fault.drop() if asked(request) != "Q0" else "ok") as server:
        cfg = config(server.base_url, concurrency=1, retry=replace(FAST, max_attempts=2, failures_to_stop=3))
        message, _ = stopped(cfg, make_requests(10), tmp_path / "log.jsonl")
        assert server.request_count == 1 + 3 * 2
    assert message.startswith("the last 3 requests") and "the server closed the connection" in message
    assert "nothing answers" not in message


def test_500_forever_fails_the_preflight_within_its_attempts(tmp_path):
    with OpenAIServer(fault_for=lambda request, attempt: Fault.server_error()) as server:
        message, seconds = stopped(config(server.base_url), make_requests(20), tmp_path / "log.jsonl")
        assert server.request_count == FAST.max_attempts
    assert seconds < CLEAR_ERROR_S and "InternalServerError" in message


def test_malformed_200_replies_are_retried_then_failed_items_with_a_reason(tmp_path):
    def fault_for(request: dict, attempt: int) -> Fault | None:
        if asked(request) == "Q0" and attempt == 0:
            return Fault.malformed()
        if asked(request) == "Q0" and attempt == 1:
            return Fault.empty_choices()
        return {"Q2": Fault.malformed(), "Q3": Fault.empty_choices()}.get(asked(request))

    with OpenAIServer(fault_for=fault_for) as server:
        summary, log = run(config(server.base_url), make_requests(5), tmp_path / "log.jsonl")
    assert (summary.done, summary.failed) == (3, 2)
    errors = {e["item"]: e["error"] for e in log.entries if e["status"] == "gave_up"}
    assert "JSONDecodeError" in errors["Q2"] and "no choices" in errors["Q3"]
    assert [e["status"] for e in log.entries if e["item"] == "Q0"] == ["retry", "retry", "ok"]


def test_a_refused_key_stops_at_once_naming_the_variable_never_the_key(tmp_path):
    with OpenAIServer() as server:
        server.fail_next(Fault.unauthorized())
        message, _ = stopped(config(server.base_url), make_requests(5), tmp_path / "log.jsonl")
        assert server.request_count == 1
    assert "refused the key in $MEDTUNE_TEST_KEY" in message
    assert SECRET not in (tmp_path / "log.jsonl").read_text(encoding="utf-8")


def test_an_unknown_model_stops_listing_the_served_models(tmp_path):
    with OpenAIServer(model="served-model") as server:
        server.fail_next(Fault.unknown_model())
        message, _ = stopped(config(server.base_url), make_requests(5), tmp_path / "log.jsonl")
        assert server.request_count == 1
    assert "does not serve model 'test-model'" in message and "it serves: served-model" in message


def test_rate_limits_wait_for_retry_after_or_back_off(tmp_path):
    with OpenAIServer() as server:
        server.fail_next(Fault.rate_limit(retry_after=0.3), Fault.rate_limit(retry_after=None))
        summary, _ = run(config(server.base_url), make_requests(3), tmp_path / "log.jsonl")
        calls = server.calls
    assert (summary.done, summary.failed) == (3, 0) and len(calls) == 5
    assert [c.fault for c in calls[:3]] == ["rate_limit", "rate_limit", None]
    assert calls[1].started - calls[0].started >= 0.3  # Retry-After honoured


def test_exhausted_quota_stops_at_once_and_keeps_what_was_answered(tmp_path):
    with OpenAIServer() as server:
        server.responder = lambda request: Fault.quota() if server.request_count > 2 else "ok"
        message, _ = stopped(config(server.base_url, concurrency=1), make_requests(6), tmp_path / "log.jsonl")
        assert server.request_count == 3  # never retried
    assert "no quota left" in message and "rerun the same command to continue" in message
    assert len(RequestLog(tmp_path / "log.jsonl").answered()) == 2


def test_a_context_length_refusal_fails_that_item_only_even_the_first(tmp_path):
    too_long = {"Q0", "Q3"}
    with OpenAIServer(lambda request: Fault.context_length() if asked(request) in too_long else "ok") as server:
        summary, log = run(config(server.base_url), make_requests(5), tmp_path / "log.jsonl")
        assert server.request_count == 5  # refused once, never retried
    assert (summary.done, summary.failed) == (3, 2)
    assert all(error.startswith("context length exceeded") for error in log.errors().values())


def test_a_run_of_failed_items_stops_the_run(tmp_path):
    with OpenAIServer(lambda request: Fault.server_error() if asked(request) != "Q0" else "ok") as server:
        cfg = config(server.base_url, concurrency=1, retry=replace(FAST, max_attempts=1, failures_to_stop=3))
        message, _ = stopped(cfg, make_requests(10), tmp_path / "log.jsonl")
        assert server.request_count == 4
    assert "the last 3 requests" in message


def test_a_rerun_pays_only_for_what_is_missing_and_repairs_a_torn_line(tmp_path):
    log_path = tmp_path / "log.jsonl"
    requests = make_requests(6)
    with OpenAIServer() as server:
        first, _ = run(config(server.base_url), requests, log_path)
        lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
        log_path.write_text("".join(lines[:-1]) + lines[-1][:25], encoding="utf-8")  # killed mid-write
        second, log = run(config(server.base_url), requests + requests[:2], log_path)
        assert server.request_count == 7  # 6, then only the torn one again
    assert (first.done, second.done, second.resumed) == (6, 1, 5)
    assert len(log.answered()) == 6 and len(RequestLog(log_path).entries) == 6  # the torn line was cut off
    assert log_path.read_text(encoding="utf-8").endswith("}\n")


@pytest.mark.parametrize(
    ("base_url", "param", "name"),
    [
        (None, "auto", "max_completion_tokens"),
        ("https://api.openai.com/v1", "auto", "max_completion_tokens"),
        ("http://127.0.0.1:8000/v1", "auto", "max_tokens"),
        ("http://127.0.0.1:8000/v1", "max_completion_tokens", "max_completion_tokens"),
        ("https://api.openai.com/v1", "max_tokens", "max_tokens"),
    ],
)
def test_the_token_limit_name_follows_the_base_url_unless_configured(base_url, param, name):
    assert token_limit_name(config(base_url, token_limit_param=param)) == name
