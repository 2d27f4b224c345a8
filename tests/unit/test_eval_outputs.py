"""Where evaluation results go: a served adapter asked by its name, and what W&B receives."""

from __future__ import annotations

import json

from medtune.api_client import RetryConfig
from medtune.config import EvalConfig
from medtune.evaluation.config import OpenAIConfig
from medtune.evaluation.pipeline import evaluate_openai
from medtune.testing import OpenAIServer


def test_the_client_asks_for_the_served_adapter_by_name_and_counts_non_answers(tmp_path):
    with OpenAIServer(lambda request: "わかりません", model="jmedlora-opencalm") as server:
        cfg = OpenAIConfig(model="jmedlora-opencalm", base_url=server.base_url, retry=RetryConfig(max_attempts=1))
        metrics = evaluate_openai(cfg, EvalConfig(suite="demo", limit=3, shots=0), tmp_path)
        calls = server.calls
    assert [call.body["model"] for call in calls] == ["jmedlora-opencalm"] * 3
    assert metrics["n_unparsed"] == 3 and metrics["official_accuracy"] == 0.0 and metrics["points"] == 0
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(row["unparsed"] for row in rows)


def test_w_and_b_gets_exclusions_unparsed_and_the_exam_verdict(tmp_path):
    from medtune.evaluation.tracking import log_eval_to_wandb

    class Run:  # what log_eval_to_wandb uses of a wandb Run
        def __init__(self):
            self.logged, self.summary = {}, {}

        def log(self, data, step=None):
            self.logged |= data

    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"problem_id": "120A-1", "unparsed": True, "rotation": 0}) + "\n")
    metrics = {"n_unparsed": 1.0, "n_excluded/no_official_answer": 2.0, "year/2025/passed": 0.0}
    run = Run()
    log_eval_to_wandb(run, "jmle2026", metrics, predictions)
    assert run.summary == {f"eval/jmle2026/{k}": v for k, v in metrics.items()}
    table = run.logged["eval/jmle2026/predictions"]
    assert "unparsed" in table.columns and table.data[0][table.columns.index("unparsed")] is True
