"""QA evaluation throughput: loglik vs generate, batched vs one question at a time, API concurrency.

    python bench/bench_eval.py                      # tiny GPT-NeoX on the demo questions, API with 200 ms latency
    python bench/bench_eval.py --repeat 5 --api-questions 128 --concurrency 16

Targets (issue 3): loglik >= 5x generate, batched >= 3x unbatched (questions/s, same model and questions,
measured in this one process), API >= 80 % of the ideal throughput concurrency / latency.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from medtune.config import EvalConfig, QuantizationConfig
from medtune.evaluation.config import OpenAIConfig
from medtune.evaluation.local import LocalBackend
from medtune.evaluation.pipeline import evaluate_openai
from medtune.evaluation.prompts import build_prompts
from medtune.models import load_base_model
from medtune.qa_data import load_questions
from medtune.testing.openai_server import OpenAIServer
from medtune.tiny import tiny_base_model


def questions_per_s(model, tokenizer, eval_cfg: EvalConfig, repeat: int) -> float:
    """Best of `repeat` timed passes over the suite (after one warm-up), answering only (no scoring, no I/O)."""
    questions = load_questions(eval_cfg)
    prompts = build_prompts(questions, eval_cfg)
    backend = LocalBackend(model, tokenizer, eval_cfg)
    backend.answer(questions[: eval_cfg.batch_size], prompts[: eval_cfg.batch_size])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        backend.answer(questions, prompts)
        best = min(best, time.perf_counter() - start)
    return len(questions) / best


def api_questions_per_s(n_questions: int, concurrency: int, latency_s: float) -> tuple[float, float]:
    """(measured, ideal) questions/s against the local server; ideal = concurrency / latency.

    The server runs in its own process, like a real remote API, so its threads do not share this
    process's interpreter lock with the client being measured.
    """
    os.environ.setdefault("MEDTUNE_BENCH_KEY", "bench")
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(child, latency_s), daemon=True)
    server.start()
    base_url = parent.recv()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "questions.jsonl"
            lines = [json.dumps(synthetic_question(i), ensure_ascii=False) + "\n" for i in range(n_questions)]
            path.write_text("".join(lines), encoding="utf-8")
            suite = EvalConfig(suite="bench", source="jsonl", path=str(path), prompt="igakuqa", shots=0)
            cfg = OpenAIConfig(
                model="bench", base_url=base_url, api_key_env="MEDTUNE_BENCH_KEY", concurrency=concurrency
            )
            start = time.perf_counter()
            metrics = evaluate_openai(cfg, suite, Path(tmp) / "out")
            seconds = time.perf_counter() - start
    finally:
        parent.send("stop")
        server.join(timeout=10)
    return metrics["n_questions"] / seconds, concurrency / latency_s


def serve(conn, latency_s: float) -> None:
    """Child process: an OpenAI-compatible server answering "a" after `latency_s`, until told to stop."""
    with OpenAIServer(lambda request: "a", latency_s=latency_s) as server:
        conn.send(server.base_url)
        conn.recv()


def synthetic_question(i: int) -> dict:
    return {
        "problem_id": f"B{i}",
        "problem_text": f"問題{i}: 正しいのはどれか。",
        "choices": list("甲乙丙丁戊"),
        "answer": ["a"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", help="a JSONL of questions (default: the bundled demo set)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=OpenAIConfig.concurrency)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the API server adds to every call")
    parser.add_argument("--api-questions", type=int, default=96)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    source = {"source": "jsonl", "path": args.questions} if args.questions else {"source": "demo"}
    suite = EvalConfig(suite="bench", batch_size=args.batch_size, **source)
    cache = Path(os.environ.get("MEDTUNE_CACHE", Path.home() / ".cache" / "medtune"))
    base = tiny_base_model("tiny_gptneox", cache)
    model, tokenizer = load_base_model(base, QuantizationConfig())

    rates = {
        (mode, batch): questions_per_s(model, tokenizer, replace(suite, mode=mode, batch_size=batch), args.repeat)
        for mode in ("loglik", "generate")
        for batch in (args.batch_size, 1)
    }
    questions = load_questions(suite)
    generated = LocalBackend(model, tokenizer, replace(suite, mode="generate")).answer(
        questions, build_prompts(questions, suite)
    )
    mean_new_tokens = sum(len(tokenizer.encode(a.response or "")) for a in generated) / len(generated)
    n_local = len(questions)
    api_runs = [api_questions_per_s(args.api_questions, args.concurrency, args.latency) for _ in range(args.repeat)]
    api_rate, ideal = max(api_runs)
    figures = {
        "questions": n_local,
        "generate_mean_new_tokens": mean_new_tokens,
        "loglik_batched_qps": rates["loglik", args.batch_size],
        "loglik_unbatched_qps": rates["loglik", 1],
        "generate_batched_qps": rates["generate", args.batch_size],
        "generate_unbatched_qps": rates["generate", 1],
        "loglik_over_generate": rates["loglik", args.batch_size] / rates["generate", args.batch_size],
        "loglik_batched_over_unbatched": rates["loglik", args.batch_size] / rates["loglik", 1],
        "generate_batched_over_unbatched": rates["generate", args.batch_size] / rates["generate", 1],
        "api_qps": api_rate,
        "api_ideal_qps": ideal,
        "api_fraction_of_ideal": api_rate / ideal,
    }
    print(f"tiny GPT-NeoX, {n_local} questions, batch {args.batch_size}, best of {args.repeat}, {os.cpu_count()} CPUs")
    for (mode, batch), rate in rates.items():
        print(f"  {mode:8s} batch {batch:2d}: {rate:8.1f} questions/s")
    print(f"  generate: {mean_new_tokens:.1f} new tokens per answer on average (max_new_tokens {suite.max_new_tokens})")
    print(f"  loglik / generate (batched):       {figures['loglik_over_generate']:.1f}x  (target >= 5)")
    print(f"  loglik batched / unbatched:        {figures['loglik_batched_over_unbatched']:.1f}x  (target >= 3)")
    print(f"  generate batched / unbatched:      {figures['generate_batched_over_unbatched']:.1f}x")
    print(
        f"  API, {args.api_questions} questions, concurrency {args.concurrency}, {args.latency * 1000:.0f} ms latency: "
        f"{api_rate:.1f} questions/s = {figures['api_fraction_of_ideal']:.0%} of ideal {ideal:.0f} (target >= 80 %)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
