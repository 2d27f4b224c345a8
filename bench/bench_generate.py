"""generate_data's call throughput against a local OpenAI-compatible server with a fixed latency per call.

Ideal wall time = chunks × latency / concurrency (every slot always busy, zero overhead).
Reports our generation wall time at concurrency 16 as a share of that ideal (target ≥ 85 %), and the
speed-up over concurrency 1, both measured in this one run. The server runs in its own process, as a
real API would, so its request handling does not compete with generate_data for this process's GIL.

python bench/bench_generate.py                     # 400 chunks, 200 ms per call (about 90 s)
python bench/bench_generate.py --chunks 100        # quicker
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

from medtune.config import WandbConfig
from medtune.datagen.config import (
    ChunkingConfig,
    DecontaminationConfig,
    GenerateConfig,
    GeneratorConfig,
    SourceConfig,
)
from medtune.datagen.pipeline import run
from medtune.testing import OpenAIServer
from medtune.testing.qa_pairs import qa_responder, synthetic_corpus


def generation_seconds(corpus: Path, out: Path, base_url: str, concurrency: int) -> float:
    cfg = GenerateConfig(
        source=SourceConfig(paths=[str(corpus)]),
        chunking=ChunkingConfig(method="lines", lines_per_chunk=1, min_chars=10),
        generator=GeneratorConfig(model="bench", base_url=base_url, concurrency=concurrency),
        decontamination=DecontaminationConfig(eval_sets=[]),
        wandb=WandbConfig(mode="disabled"),
        progress=False,
    )
    manifest = run(cfg, out)
    return float(manifest["generation_seconds"])


def _serve(latency: float, conn: Connection) -> None:
    with OpenAIServer(qa_responder, latency_s=latency) as server:
        conn.send(server.base_url)
        conn.recv()  # any message: stop


@contextmanager
def server_process(latency: float) -> Iterator[str]:
    """The base URL of an OpenAIServer running in a child process."""
    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(target=_serve, args=(latency, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=400, help="at most 400")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per call")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, server_process(args.latency) as base_url:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(synthetic_corpus(args.chunks), encoding="utf-8")
        parallel = generation_seconds(corpus, Path(tmp) / "parallel", base_url, args.concurrency)
        serial = generation_seconds(corpus, Path(tmp) / "serial", base_url, 1)
    ideal = args.chunks * args.latency / args.concurrency
    result = {
        "chunks": args.chunks,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "ideal_s": round(ideal, 3),
        "wall_s": round(parallel, 3),
        "share_of_ideal": round(ideal / parallel, 3),  # 1.0 = no overhead at all
        "serial_wall_s": round(serial, 3),
        "speedup_vs_concurrency_1": round(serial / parallel, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
