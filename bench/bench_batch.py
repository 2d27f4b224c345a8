"""generate_data's batch mode against the loopback server: what it costs and whether it gives the live records.

The same chunks are generated twice into two output dirs, live (concurrency 8) and with generator.batch=true,
at gpt-4o-mini list prices ("tokens" are characters on the loopback server). Reports the manifest costs and
their ratio (target 0.5: the Batch API's price), whether records.jsonl is byte-identical, and how many
batches, uploads and answered lines the server saw (target: 1, 1, one per chunk).

python bench/bench_batch.py                # 200 chunks
python bench/bench_batch.py --chunks 50    # quicker
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from medtune.config import WandbConfig
from medtune.datagen.config import ChunkingConfig, DecontaminationConfig, GenerateConfig, GeneratorConfig, SourceConfig
from medtune.datagen.pipeline import run
from medtune.testing import OpenAIServer
from medtune.testing.qa_pairs import qa_responder, synthetic_corpus


def generate(corpus: Path, out: Path, base_url: str, batch: bool) -> dict:
    cfg = GenerateConfig(
        source=SourceConfig(paths=[str(corpus)]),
        chunking=ChunkingConfig(lines_per_chunk=1, min_chars=10),
        generator=GeneratorConfig(model="gpt-4o-mini", base_url=base_url, batch=batch, batch_poll_s=0.05),
        decontamination=DecontaminationConfig(eval_sets=[]),
        wandb=WandbConfig(mode="disabled"),
        progress=False,
    )
    return run(cfg, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(qa_responder) as server:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(synthetic_corpus(args.chunks), encoding="utf-8")
        live = generate(corpus, Path(tmp) / "live", server.base_url, batch=False)
        live_calls = server.request_count
        batched = generate(corpus, Path(tmp) / "batch", server.base_url, batch=True)
        records = [(Path(tmp) / name / "records.jsonl").read_bytes() for name in ("live", "batch")]
        result = {
            "chunks": live["funnel"]["chunks"],
            "records": batched["funnel"]["kept"],
            "records_identical": records[0] == records[1],
            "live_cost_usd": live["cost_usd"],
            "batch_cost_usd": batched["cost_usd"],
            "cost_ratio": round(batched["cost_usd"] / live["cost_usd"], 4),
            "batches_created": len(server.batches),
            "files_uploaded": len(server.batch_store.uploads),
            "batch_lines_answered": server.request_count - live_calls,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
