"""The real evaluate.py as a subprocess: a base model, a trained run, bad input, an API model that is down, killed or
fails one job of a multirun (the API backend in-process: unit/test_evaluate_api.py)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from medtune.api_client import RequestLog, request_key
from medtune.run_dir import API_ANSWERS_FILE
from medtune.testing.openai_server import OpenAIServer, unused_base_url

from helpers import kill_script_when, run_script, run_script_reporting_torch
from wandb_records import offline_runs

QUESTIONS = [
    {"problem_id": "C1", "problem_text": "高アンモニア血症をきたす疾患はどれか。", "category": "小児科",
     "choices": ["Gaucher病", "von Gierke病", "Hurler症候群", "メープルシロップ尿症",
                 "オルニチントランスカルバミラーゼ欠損症"],
     "answer": ["e"], "points": "1"},
    {"problem_id": "C2", "problem_text": "原因として考えられるのはどれか。2つ選べ。", "category": "循環器",
     "choices": ["大動脈弁閉鎖不全症", "左室自由壁破裂", "解離性大動脈瘤", "心室中隔穿孔", "乳頭筋断裂"],
     "answer": ["d", "e"], "points": "3"},
    {"problem_id": "C3", "problem_text": "介入研究はどれか。", "category": "公衆衛生",
     "choices": ["横断研究", "コホート研究", "症例対照研究", "ケースシリーズ研究", "ランダム化比較試験"],
     "answer": ["e"], "points": "1"},
]  # fmt: skip


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    return path


def predictions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def test_untuned_base_is_scored_and_tracked(tmp_path, tiny_models, questions):
    run_dir = tmp_path / "eval"
    proc = run_script("evaluate.py", "eval=jsonl", f"eval.path={questions}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_questions"] == 3 and metrics["points_total"] == 5 and 0 <= metrics["accuracy"] <= 1
    assert [row["problem_id"] for row in predictions(run_dir)] == ["C1", "C2", "C3"]
    assert all(len(row["choice_scores"]) == 5 for row in predictions(run_dir))  # loglik mode
    [wb] = offline_runs(run_dir)
    assert wb.exit_code == 0 and {"eval", "custom", "local"} <= set(wb.tags)
    assert wb.summary["eval/custom/accuracy"] == pytest.approx(metrics["accuracy"])
    assert wb.summary["eval/custom/category/循環器/accuracy"] == pytest.approx(metrics["category/循環器/accuracy"])
    assert wb.summary["eval/custom/predictions/nrows"] == 3  # the predictions table
    assert wb.summary["eval/custom/category_accuracy_table/nrows"] == 3  # data of the per-category bar chart
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "wandb").exists()
    # the default console: medtune's closing lines, none of W&B's own summary or adverts, no loading bars
    assert f"medtune: evaluation finished in {run_dir}" in proc.stdout and str(run_dir / "metrics.json") in proc.stdout
    assert f"wandb sync {run_dir / 'wandb'}" in proc.stdout
    for chatter in ("Run summary", "Run history", "Weave", "Loading weights"):
        assert chatter not in proc.stdout + proc.stderr


def test_a_trained_run_dir_is_evaluated_with_its_adapter(tmp_path, trained_run, questions):
    from medtune.config import EvalConfig
    from medtune.evaluation.pipeline import evaluate_model
    from medtune.models import load_base_model, load_trained

    (train_dir, trained), tuned_dir = trained_run, tmp_path / "tuned"
    assert trained.returncode == 0, trained.stderr[-3000:]
    tuned = run_script(
        "evaluate.py", "eval=jsonl", f"eval.path={questions}", f"run_dir={train_dir}", f"hydra.run.dir={tuned_dir}",
        cwd=tmp_path,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    [trained_run], [eval_run] = offline_runs(train_dir), offline_runs(tuned_dir)
    [logged], [used] = trained_run.logged("model"), eval_run.used("model")  # lineage: this model made this score
    assert used.name == logged.name and used.digest == logged.digest
    suite = EvalConfig(suite="custom", source="jsonl", path=str(questions))
    _, _, train_cfg = load_trained(train_dir)
    base_model, tokenizer = load_base_model(train_cfg.base_model, train_cfg.quantization)
    evaluate_model(base_model, tokenizer, suite, tmp_path / "base")
    base_scores = [row["choice_scores"] for row in predictions(tmp_path / "base")]
    tuned_scores = [row["choice_scores"] for row in predictions(tuned_dir)]
    assert base_scores != tuned_scores  # the adapter's weights changed the model's log-likelihoods


def run_reporting_torch(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_script_reporting_torch(
        "evaluate.py", *overrides, "wandb.mode=disabled", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )


def test_bad_input_exits_2_with_one_clear_line_before_torch_is_imported(tmp_path, tiny_models, questions):
    """The questions are read before the model loads: a bad file shows in seconds (the tiny base is built, so
    nothing needs torch before then)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(questions.read_text(encoding="utf-8").splitlines()[0] + "\n{broken\n", encoding="utf-8")
    proc = run_reporting_torch(tmp_path, "eval=jsonl", f"eval.path={bad}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("medtune: error:")]
    assert len(errors) == 1 and "bad.jsonl:2" in errors[0] and "Traceback" not in proc.stderr
    assert "torch imported: False" in proc.stdout


def test_a_config_mistake_exits_2_with_one_line_before_torch_is_imported(tmp_path):
    """evaluate.py checks its config before the heavy imports, so a mistake shows in about 2 s, not after torch's
    ~10 s."""
    proc = run_reporting_torch(tmp_path, "eval=igakuqa")  # no eval.path
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("medtune: error:")]
    assert errors == ["medtune: error: eval=igakuqa needs eval.path=<directory or file>."]
    assert "Traceback" not in proc.stderr
    assert "torch imported: False" in proc.stdout


# --------------------------------------------------------------- backend=openai against the suite's local server
API = ["backend=openai", "eval=jsonl", "eval.prompt=igakuqa", "eval.shots=0", "wandb.mode=disabled", "progress=false"]


def test_server_down_exits_2_quickly_with_one_line(tmp_path, questions):
    url = unused_base_url()
    started = time.monotonic()
    proc = run_script(
        "evaluate.py", "backend=openai", f"openai.base_url={url}", "eval=jsonl", f"eval.path={questions}",
        "wandb.mode=disabled", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )  # fmt: skip
    assert time.monotonic() - started < 60  # generous: interpreter start-up and imports included
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("medtune: error:")]
    assert len(errors) == 1 and f"nothing answers at {url} — is the server running?" in errors[0]
    assert json.loads((tmp_path / "run" / "run_status.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_multirun_records_a_failed_job_and_goes_on(tmp_path, questions):
    sweep = tmp_path / "sweep"
    with OpenAIServer(lambda request: "a") as server:
        proc = run_script(
            "evaluate.py", "-m", *API, f"openai.base_url={unused_base_url()},{server.base_url}",
            f"eval.path={questions}", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 1 and "1 cell(s) did not finish" in proc.stderr and "Traceback" not in proc.stderr
    statuses = sorted(json.loads(path.read_text())["status"] for path in sweep.rglob("run_status.json"))
    assert statuses == ["failed", "finished"]


def test_kill9_mid_run_then_resume_never_asks_an_answered_question_again(tmp_path):
    path = tmp_path / "many.jsonl"
    many = [dict(QUESTIONS[0], problem_id=f"M{i}", problem_text=f"問題{i}: 正しいのはどれか。") for i in range(40)]
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in many), encoding="utf-8")
    run_dir, log = tmp_path / "run", tmp_path / "run" / API_ANSWERS_FILE
    with OpenAIServer(lambda request: "a", latency_s=0.1) as server:
        args = [*API, f"openai.base_url={server.base_url}", "openai.concurrency=2", f"eval.path={path}"]
        kill_script_when(
            "evaluate.py", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=60,
            ready=lambda: log.exists() and log.read_text().count('"status": "ok"') >= 6,
        )  # fmt: skip
        paid = set(RequestLog(log).answered())
        before = server.request_count
        assert 6 <= len(paid) < len(many) and not (run_dir / "metrics.json").exists()
        proc = run_script("evaluate.py", *args, f"resume={run_dir}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        asked_again = {request_key(c.body) for c in server.calls[before:]}
    assert not asked_again & paid and len(asked_again) == len(many) - len(paid)
    assert json.loads((run_dir / "metrics.json").read_text())["n_failed"] == 0
    assert f"{len(many) - len(paid)} done, 0 failed, {len(paid)} resumed" in proc.stderr
    assert "HTTP Request" not in proc.stderr + proc.stdout  # httpx2's INFO line per request is off by default
    assert f"medtune: evaluation finished in {run_dir}" in proc.stdout
