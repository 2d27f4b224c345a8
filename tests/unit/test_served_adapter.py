"""A trained adapter served by vLLM (`--lora-modules <name>=<run dir>/model`) is scored by its name."""

from __future__ import annotations

import json

from medtune.config import EvalConfig
from medtune.evaluation import OpenAIConfig, evaluate_openai
from medtune.testing import OpenAIServer


def test_the_client_asks_for_the_served_adapter_by_name_and_counts_non_answers(tmp_path):
    with OpenAIServer(lambda request: "わかりません", model="jmedlora-opencalm") as server:
        cfg = OpenAIConfig(model="jmedlora-opencalm", base_url=server.base_url, max_retries=0)
        metrics = evaluate_openai(cfg, EvalConfig(suite="demo", limit=3, shots=0), tmp_path)
        calls = server.calls
    assert [call.body["model"] for call in calls] == ["jmedlora-opencalm"] * 3
    assert metrics["n_unparsed"] == 3 and metrics["official_accuracy"] == 0.0 and metrics["points"] == 0
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(row["unparsed"] for row in rows)
