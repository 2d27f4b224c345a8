"""API backend against a real OpenAI-compatible HTTP server on 127.0.0.1, through the official client.

Answers are scripted per question; 429 and 500 replies must be retried; a question that still fails is
recorded and counted; a re-run in the same directory pays only for what is missing. (evaluate.py itself with
backend=openai, as a subprocess: integration/test_evaluate_cli.py.)
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from medtune.api_client import ApiFailed, ApiStopped, RetryConfig
from medtune.config import EvalConfig, WandbConfig
from medtune.evaluation import pipeline
from medtune.evaluation.config import EvaluateConfig, OpenAIConfig
from medtune.evaluation.pipeline import evaluate_openai
from medtune.run_dir import API_ANSWERS_FILE
from medtune.testing.openai_server import Fault, OpenAIServer

from wandb_records import finished_offline_runs

QUESTIONS = [
    {"problem_id": f"Q{i}", "problem_text": f"問題{i}: 正しいのはどれか。", "choices": ["甲", "乙", "丙", "丁", "戊"],
     "answer": [answer], "points": "1"}
    for i, answer in enumerate("abcde", start=1)
]  # fmt: skip
SCRIPT = {"Q1": "a", "Q2": "b", "Q3": "丙", "Q4": "a", "Q5": "ｅ"}  # Q3 answers in text, Q4 is wrong, Q5 full-width


def responder(request: dict) -> str:
    question = request["messages"][-1]["content"]
    return next(answer for pid, answer in SCRIPT.items() if f"問題{pid[1:]}:" in question)


def asked(request: dict) -> str:
    return next(pid for pid in SCRIPT if f"問題{pid[1:]}:" in request["messages"][-1]["content"])


@pytest.fixture
def eval_cfg(tmp_path: Path) -> EvalConfig:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    return EvalConfig(suite="api", source="jsonl", path=str(path), prompt="igakuqa", shots=0)


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("MEDTUNE_TEST_KEY", "sk-test-123")
    return "sk-test-123"


def openai_cfg(server: OpenAIServer, **overrides) -> OpenAIConfig:
    fast = RetryConfig(backoff_initial_s=0.01)
    return OpenAIConfig(
        **{"model": "test-model", "base_url": server.base_url, "api_key_env": "MEDTUNE_TEST_KEY", "retry": fast}
        | overrides
    )


def test_rate_limit_and_server_error_are_retried(eval_cfg, api_key, tmp_path):
    with OpenAIServer(responder) as server:
        server.fail_next(Fault.rate_limit(retry_after=0.01), Fault.server_error())
        metrics = evaluate_openai(openai_cfg(server), eval_cfg, tmp_path / "out")
        calls = server.calls
    assert [c.fault for c in calls[:2]] == ["rate_limit", "server_error"]
    assert len(calls) == len(QUESTIONS) + 2  # both faults were retried, nothing else was
    assert all(c.api_key == api_key and c.body["model"] == "test-model" for c in calls)
    assert metrics["n_failed"] == 0 and metrics["official_accuracy"] == pytest.approx(4 / 5)
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["parsed"] for r in rows] == [["a"], ["b"], ["c"], ["a"], ["e"]]
    assert calls[0].body["messages"][0]["content"] == "医師国家試験を解きます。"


def test_the_token_limit_goes_under_the_name_the_server_wants_and_an_unset_temperature_is_left_out(
    eval_cfg, api_key, tmp_path
):
    with OpenAIServer(responder) as server:  # a local server: max_tokens (auto)
        evaluate_openai(openai_cfg(server, max_tokens=16), eval_cfg, tmp_path / "local")
        local = server.calls
    with OpenAIServer(responder, token_limit_params=("max_completion_tokens",)) as server:  # as OpenAI's API
        cfg = openai_cfg(server, max_tokens=16, token_limit_param="max_completion_tokens", temperature=None)
        metrics = evaluate_openai(cfg, eval_cfg, tmp_path / "openai")
        strict = server.calls
    assert {(c.token_limit_param, c.body["temperature"]) for c in local} == {("max_tokens", 0.0)}
    assert {c.token_limit_param for c in strict} == {"max_completion_tokens"} and metrics["n_failed"] == 0
    assert not any("temperature" in c.body for c in strict)


def test_failed_questions_are_counted_and_a_rerun_pays_only_for_them(eval_cfg, api_key, tmp_path):
    out = tmp_path / "out"
    always_fail_q3 = lambda request, attempt: Fault.server_error() if asked(request) == "Q3" else None  # noqa: E731
    with OpenAIServer(responder, fault_for=always_fail_q3) as server:
        two_tries = RetryConfig(max_attempts=2, backoff_initial_s=0.01)
        first = evaluate_openai(openai_cfg(server, retry=two_tries, max_failed_share=1.0), eval_cfg, out)
        assert server.request_count == len(QUESTIONS) + 1  # Q3: first try + one retry
    assert first["n_failed"] == 1 and first["n_questions"] == 5
    q3 = [json.loads(line) for line in (out / API_ANSWERS_FILE).read_text().splitlines() if '"Q3"' in line]
    assert [row["status"] for row in q3] == ["retry", "gave_up"] and "InternalServerError" in q3[-1]["error"]

    with OpenAIServer(responder) as server:
        second = evaluate_openai(openai_cfg(server), eval_cfg, out)
        assert [asked(c.body) for c in server.calls] == ["Q3"]
    assert second["n_failed"] == 0 and second["official_accuracy"] == pytest.approx(4 / 5)

    with OpenAIServer(responder) as server:
        third = evaluate_openai(openai_cfg(server), eval_cfg, out)
        assert server.request_count == 0
    assert third == {**second, "eval_seconds": third["eval_seconds"]}


def test_a_torn_last_log_line_is_asked_again(eval_cfg, api_key, tmp_path):
    out = tmp_path / "out"
    with OpenAIServer(responder) as server:
        evaluate_openai(openai_cfg(server), eval_cfg, out)
    log = out / API_ANSWERS_FILE
    lines = log.read_text(encoding="utf-8").splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20], encoding="utf-8")  # a crash mid-write
    with OpenAIServer(responder) as server:
        metrics = evaluate_openai(openai_cfg(server), eval_cfg, out)
        assert server.request_count == 1
    assert metrics["n_failed"] == 0


def test_a_different_model_is_not_served_from_another_models_answers(eval_cfg, api_key, tmp_path):
    with OpenAIServer(responder) as server:
        evaluate_openai(openai_cfg(server), eval_cfg, tmp_path)
        evaluate_openai(openai_cfg(server, model="other-model"), eval_cfg, tmp_path)
        assert server.request_count == 2 * len(QUESTIONS)


def test_concurrency_limit_is_respected_and_used(eval_cfg, api_key, tmp_path):
    in_flight, peak, lock = 0, 0, threading.Lock()

    def slow_responder(request: dict) -> str:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.1)
        with lock:
            in_flight -= 1
        return responder(request)

    with OpenAIServer(slow_responder) as server:
        evaluate_openai(openai_cfg(server, concurrency=2), eval_cfg, tmp_path)
    assert peak == 2


def test_rejected_credentials_stop_the_run_with_a_clear_error(eval_cfg, api_key, tmp_path):
    with OpenAIServer(responder) as server:
        server.fail_next(*[Fault.unauthorized()] * len(QUESTIONS))
        with pytest.raises(ApiStopped, match=r"refused the key in \$MEDTUNE_TEST_KEY"):
            evaluate_openai(openai_cfg(server), eval_cfg, tmp_path)
        assert server.request_count == 1  # the preflight request alone


# --------------------------------------------------------------- a failed evaluation never looks like a score
def evaluate_config(server: OpenAIServer, eval_cfg: EvalConfig, tmp_path: Path) -> EvaluateConfig:
    return EvaluateConfig(
        backend="openai",
        eval=eval_cfg,
        openai=openai_cfg(server, retry=RetryConfig(max_attempts=2, backoff_initial_s=0.01)),
        wandb=WandbConfig(mode="offline"),
        cache_dir=str(tmp_path / "cache"),
        progress=False,
    )


def test_a_question_failed_after_its_retries_fails_the_run_and_records_no_score(eval_cfg, api_key, tmp_path):
    out = tmp_path / "run"
    always_fail_q3 = lambda request, attempt: Fault.server_error() if asked(request) == "Q3" else None  # noqa: E731
    failed = pytest.raises(ApiFailed, match=r"1 of 5 questions failed .* Q3: InternalServerError.*no score")
    with OpenAIServer(responder, fault_for=always_fail_q3) as server, failed:
        pipeline.run(evaluate_config(server, eval_cfg, tmp_path), out)
    assert json.loads((out / "run_status.json").read_text())["status"] == "failed"
    assert json.loads((out / "metrics.json").read_text()) == {"status": "failed", "n_questions": 5, "n_failed": 1}
    rows = {row["problem_id"]: row for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert rows["Q3"]["failed"] and "InternalServerError" in rows["Q3"]["error"] and rows["Q1"]["correct"]
    [wb] = finished_offline_runs(out)
    assert wb.exit_code == 1 and wb.summary["eval/api/n_failed"] == 1
    assert not any("accuracy" in key for key in wb.summary)
    assert not any(api_key.encode() in path.read_bytes() for path in out.rglob("*") if path.is_file())  # W&B too


def test_max_failed_share_lets_a_few_failures_through_as_a_score(eval_cfg, api_key, tmp_path):
    always_fail_q3 = lambda request, attempt: Fault.server_error() if asked(request) == "Q3" else None  # noqa: E731
    with OpenAIServer(responder, fault_for=always_fail_q3) as server:
        cfg = openai_cfg(server, retry=RetryConfig(max_attempts=1), max_failed_share=0.2)
        metrics = evaluate_openai(cfg, eval_cfg, tmp_path / "run")
    assert metrics["n_failed"] == 1 and metrics["official_accuracy"] == pytest.approx(3 / 5)
