"""bench/bench_shapes.py: the real-shape benchmark's --smoke run (same code, toy width, CPU) and its floors."""

from __future__ import annotations

import gc
import importlib.util
import json
import sys

import pytest
import torch

from helpers import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_shapes", REPO / "bench" / "bench_shapes.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    gc.collect()
    gc.freeze()  # its imports (transformers' Trainer, bitsandbytes) live on: the smoke run's ~24 collections skip them
    return module


@pytest.mark.slow  # ~15 s: the benchmark's own code at toy width, not the inner loop
def test_smoke_run_measures_every_depth_batching_mode_and_scorer(bench, tmp_path):
    out = tmp_path / "shapes.json"
    bench.main(["--smoke", "--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results["shapes"]) == {"opencalm_7b", "llama2_70b"}
    for report in results["shapes"].values():
        assert [d["layers"] for d in report["depths"]] == [1, 2]
        assert all("error" not in d and d["step_s"] > 0 and d["tokens_per_s"] > 0 for d in report["depths"])
        assert report["extrapolated"]["step_s"] is not None  # a line through both depths, read at full depth
        modes = {mode: m for mode, m in report["batching"].items() if isinstance(m, dict)}
        assert set(modes) == {"padding", "padding_free_sdpa", "bins_sdpa"}  # CPU: no varlen kernel
        assert all("error" not in m and m["speedup_vs_padding"] > 0 for m in modes.values())
        assert report["scoring"]["loglik_speedup"] > 0
    assert results["shapes"]["llama2_70b"]["method"] == "lora r=64 quantization=nf4"  # the preset's method


def test_a_failing_measurement_is_recorded_and_the_run_goes_on(bench):
    def broken():
        raise RuntimeError("CUDA out of memory\nsecond line")

    assert bench.measure("broken", broken)["error"] == "RuntimeError: CUDA out of memory"


def test_real_shape_floors_match_the_models_published_sizes(bench):
    """OpenCALM-7B has 6.8 B parameters (13.7 GB in bf16); Llama-2-70B in NF4 is ~35 GB of 4-bit weights
    (68.7 B linear weights at 4.127 bits) plus fp32 embeddings and r=64 LoRA states on all linear layers."""
    calm = bench.memory_floor_gb(bench.SHAPES["opencalm_7b"], bench.preset_config("jmedlora_opencalm", False), False)
    llama = bench.memory_floor_gb(
        bench.SHAPES["llama2_70b"], bench.preset_config("jmedlora_llama2_qlora", False), False
    )
    assert 13.5 < calm["weights_gb"] < 14.0 and calm["lora_state_gb"] < 0.1
    assert 36 < llama["weights_gb"] < 39 and 13 < llama["lora_state_gb"] < 14


def test_extrapolation_is_the_least_squares_line(bench):
    assert bench.extrapolate([(2, 3.0), (4, 5.0), (8, 9.0)], 80) == pytest.approx(81.0)
    assert bench.extrapolate([(2, 3.0)], 80) is None


@pytest.mark.slow  # ~10 s quiet: the bench's own code for two batches
def test_bench_packing_compares_every_layout_on_the_same_batches(bench, cache_dir, tiny_models, tmp_path, monkeypatch):
    """bench/bench_packing.py --by step on the demo, two batches: every layout measured, padding the baseline."""
    spec = importlib.util.spec_from_file_location("bench_packing", REPO / "bench" / "bench_packing.py")
    assert spec and spec.loader
    packing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(packing)
    monkeypatch.setenv("MEDTUNE_CACHE", str(cache_dir))
    out = tmp_path / "packing.json"
    threads = torch.get_num_threads()
    try:
        packing.main(["--shape", "demo", "--by", "step", "--rounds", "1", "--steps", "2", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)  # the bench sets one thread for itself
    demo = json.loads(out.read_text())["shapes"]["demo"]
    assert set(demo["speedup_vs_padding"]) == {"false", "auto", "bins_longest", "one_row"}
    assert demo["speedup_vs_padding"]["false"] == 1.0 and all(v > 0 for v in demo["tokens_per_s"].values())
    assert demo["layouts"]["auto"].startswith("bins on sdpa")
