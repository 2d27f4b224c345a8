"""The shared API client (medtune.api_client) as both scripts use it: time to a clear error, throughput.

1. Time to a clear error with nothing listening: the real `evaluate.py` and `generate_data.py` as
   subprocesses pointed at a closed port (wall time including interpreter start-up, exit status, the
   error line), target <= 30 s each.
2. Throughput at concurrency 16 against a server adding 200 ms per call (run in its own process, as a
   remote API would be): questions (evaluate_openai) and chunks (generate_data's run) per second as a
   share of the ideal concurrency / latency, target >= 85 % each.

python bench/bench_api.py                      # 160 questions and 160 chunks (about 1 minute on 2 CPUs)
python bench/bench_api.py --items 320 --json /tmp/api.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_generate import generation_seconds, server_process

from medtune.config import EvalConfig
from medtune.evaluation.config import OpenAIConfig
from medtune.evaluation.pipeline import evaluate_openai
from medtune.testing import unused_base_url
from medtune.testing.qa_pairs import synthetic_corpus

REPO = Path(__file__).resolve().parent.parent


def time_to_error(script: str, overrides: list[str], cwd: Path) -> dict:
    """Wall seconds until `script` exits, its exit status and its `medtune: error:` line."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *overrides], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    seconds = time.perf_counter() - started
    line = next((x for x in proc.stderr.splitlines() if x.startswith("medtune: error:")), proc.stderr[-300:])
    return {"seconds": round(seconds, 2), "exit_status": proc.returncode, "error": line}


def questions_per_s(tmp: Path, base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """(questions/s, this process's CPU ms per question): the CPU figure does not depend on machine load."""
    path = tmp / "questions.jsonl"
    rows = [
        {"problem_id": f"B{i}", "problem_text": f"問題{i}", "choices": list("甲乙丙丁戊"), "answer": ["a"]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    suite = EvalConfig(suite="bench", source="jsonl", path=str(path), prompt="igakuqa", shots=0)
    cfg = OpenAIConfig(model="bench", base_url=base_url, concurrency=concurrency)
    started, cpu = time.perf_counter(), time.process_time()
    evaluate_openai(cfg, suite, tmp / "eval")
    return n / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=160, help="questions and chunks (at most 400 chunks)")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        corpus = tmp / "corpus.txt"
        corpus.write_text(synthetic_corpus(args.items), encoding="utf-8")
        dead = unused_base_url()
        common = ["wandb.mode=disabled", "progress=false"]
        evaluate = ["backend=openai", f"openai.base_url={dead}", f"hydra.run.dir={tmp / 'e'}", *common]
        generate = [f"source.paths=[{corpus}]", "generator=local", "generator.model=m", f"generator.base_url={dead}",
                    "decontamination.eval_sets=[]", f"hydra.run.dir={tmp / 'g'}", *common]  # fmt: skip
        errors = {
            "evaluate.py": time_to_error("evaluate.py", evaluate, tmp),
            "generate_data.py": time_to_error("generate_data.py", generate, tmp),
        }
        ideal = args.concurrency / args.latency
        with server_process(args.latency) as base_url:
            eval_rate, eval_cpu_ms = questions_per_s(tmp, base_url, args.items, args.concurrency)
            cpu = time.process_time()
            chunk_seconds = generation_seconds(corpus, tmp / "gen", base_url, args.concurrency)
            gen_cpu_ms = (time.process_time() - cpu) * 1000 / args.items
    chunk_rate = args.items / chunk_seconds
    figures = {
        "time_to_error": errors,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "ideal_per_s": ideal,
        "evaluate_questions_per_s": round(eval_rate, 2),
        "evaluate_share_of_ideal": round(eval_rate / ideal, 3),
        "evaluate_cpu_ms_per_question": round(eval_cpu_ms, 2),
        "generate_chunks_per_s": round(chunk_rate, 2),
        "generate_share_of_ideal": round(chunk_rate / ideal, 3),
        "generate_cpu_ms_per_chunk": round(gen_cpu_ms, 2),  # the whole run: calls, parsing, dedup, outputs
    }
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
