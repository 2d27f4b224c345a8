"""Packing vs padding, side by side and interleaved: non-pad tokens/s of each batch layout on the same batches.

    python bench/bench_packing.py                              # the CPU demo + both preset shapes at toy width
    python bench/bench_packing.py --shape demo --rounds 6 --json /tmp/packing.json
    python bench/bench_packing.py --shape opencalm_7b,llama2_70b --real-width   # a GPU: the presets' own widths

Each shape is trained as train.py trains it (its preset's TrainingArguments, LoRA/QLoRA, the Trainer), once per
layout for `--steps` steps (the first untimed), and the layouts take turns round after round (the order rotating),
so a busy machine slows each of them alike. Within a round every layout trains on the same batches (same data
seed), so they count the same non-pad tokens and their tokens/s ratio is the ratio of their step times.

Layouts: `false` (padding, dataset.packing=false), `auto` (what dataset.packing=auto chooses for the shape's
attention kernel on this device: best-fit bins on sdpa, sized by cost on a CPU, no longer than the longest example
on a GPU), the other of those two bins, `one_row` (the whole batch in one row on sdpa: packing before issue 24),
and on a GPU the auto choice on its varlen kernel (flash_attention_2, else flex_attention with bucketed lengths).

Shapes: `demo` is the CPU demo (`python train.py`: tiny GPT-NeoX, LoRA r=32 all-linear, batch 8, the bundled
records); `opencalm_7b` and `llama2_70b` are bench_shapes.py's shapes (2 layers) with its study-like records of up
to 512 + 512 tokens; without --real-width they are built at bench_shapes' toy width (64 wide), which keeps the
records' lengths, and so the padding and attention costs that decide between layouts, but not the real arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_shapes

from medtune.config import TrainConfig, to_train_config
from medtune.data import build_datasets, collator_for, load_splits
from medtune.enums import PackingStrategy
from medtune.models import attach_adapter, load_base_model
from medtune.packing import PackingChoice, choose_packing
from medtune.tiny_paths import ensure_tiny_model

SHAPE_LAYERS = 2  # depth of the preset shapes: enough for the per-layer cost, small enough for a CPU


def compose(overrides: list[str]) -> TrainConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from medtune.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(bench_shapes.REPO / "conf"), version_base="1.3"):
        return to_train_config(hydra_compose(config_name="train", overrides=overrides))


def demo_setup(cache: Path) -> tuple[Any, Any, Any, TrainConfig]:
    """The CPU demo as `python train.py` runs it: model with its adapter, tokenizer, tokenized records, config."""
    tc = compose([f"cache_dir={cache}"])
    ensure_tiny_model(tc.base_model, cache)
    torch.manual_seed(0)
    model, tokenizer = load_base_model(tc.base_model, tc.quantization)
    model.config.use_cache = False
    records, _ = build_datasets(load_splits(tc.dataset, tc.stage, tc.trainer.seed), tokenizer, tc.dataset, tc.stage)
    return attach_adapter(model, tc.adapter, False), tokenizer, records, tc


def shape_setup(name: str, real_width: bool, device: str) -> tuple[Any, Any, Any, TrainConfig]:
    """bench_shapes' shape at SHAPE_LAYERS layers with its preset and study-like records of the preset's lengths."""
    shape = bench_shapes.SHAPES[name]
    smoke = not real_width
    tc = bench_shapes.preset_config(shape.preset, smoke)
    if smoke:  # toy width, but the preset's own lengths and batch: those decide padding vs packing
        full = bench_shapes.preset_config(shape.preset, smoke=False)
        tc = replace(tc, dataset=full.dataset, trainer=replace(tc.trainer, batch_size=full.trainer.batch_size))
    tokenizer = bench_shapes.train_tokenizer(bench_shapes.demo_assets.corpus_path())
    vocab = (shape.smoke_dims if smoke else shape.dims)["vocab_size"]
    d = tc.dataset
    n_records = 64 * tc.trainer.batch_size
    records = bench_shapes.study_like_records(n_records, d.max_input_tokens, d.max_target_tokens, vocab)
    torch.manual_seed(0)
    return bench_shapes.build_model(shape, SHAPE_LAYERS, tc, device, smoke), tokenizer, records, tc


def layouts(attn: str, device: str) -> dict[str, tuple[PackingChoice, str]]:
    """Layout name -> (packing choice, attention kernel) to compare on this machine."""
    chosen = {
        "false": (choose_packing(False, attn, device=device), attn),
        "auto": (choose_packing("auto", attn, device=device), attn),
        # the other bins (auto's on the other kind of device) and DataCollatorWithFlattening's one row on sdpa
        "bins_longest": (PackingChoice(PackingStrategy.bins, "rows no longer than the longest example"), "sdpa"),
        "bins_by_cost": (PackingChoice(PackingStrategy.bins, "rows of least cost", rows_by_cost=True), "sdpa"),
        "one_row": (PackingChoice(PackingStrategy.varlen, "the batch in one row"), "sdpa"),
    }
    kernel = bench_shapes.varlen_attention(device)
    if kernel != "sdpa":
        chosen[f"auto_{kernel}"] = (choose_packing("auto", kernel, device=device), kernel)

    def layout(entry: tuple[PackingChoice, str]) -> tuple[Any, ...]:
        return entry[0].strategy, entry[0].rows_by_cost, entry[1]

    twin = layout(chosen["auto"])
    return {name: c for name, c in chosen.items() if name == "auto" or layout(c) != twin}  # auto's twin: once


def compare(model, tokenizer, records, tc: TrainConfig, device: str, args, out: Path) -> dict[str, Any]:
    """Every layout `rounds` times, interleaved; tokens/s = all its timed tokens over all its timed seconds."""
    base = model.get_base_model()
    attn = tc.base_model.attn_implementation
    chosen = layouts(attn, device)
    totals = {name: [0.0, 0.0] for name in chosen}  # tokens, seconds
    per_round: list[dict[str, float]] = []
    for round_ in range(args.rounds):
        names = list(chosen)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]  # rotate who goes first
        rates = {}
        round_tc = replace(tc, trainer=replace(tc.trainer, seed=round_, group_by_length=False))
        for name in names:
            choice, kernel = chosen[name]
            base.set_attn_implementation(kernel)
            collator = collator_for(tokenizer, choice, base)
            figures = bench_shapes.train_steps(
                model, round_tc, records, collator, args.steps, out / f"{name}-{round_}", tokenizer
            )
            seconds = figures["step_s"] * (args.steps - 1)
            totals[name][0] += figures["tokens_per_s"] * seconds
            totals[name][1] += seconds
            rates[name] = figures["tokens_per_s"]
        per_round.append(rates)
        bench_shapes._progress(f"round {round_ + 1}: " + ", ".join(f"{k}={v:,.0f} tok/s" for k, v in rates.items()))
    base.set_attn_implementation(attn)
    tokens_per_s = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    padded = tokens_per_s["false"]
    return {
        "attn_implementation": attn,
        "layouts": {name: f"{c.strategy} on {kernel}: {c.reason}" for name, (c, kernel) in chosen.items()},
        "tokens_per_s": tokens_per_s,
        "speedup_vs_padding": {name: rate / padded for name, rate in tokens_per_s.items()},
        "round_speedups": {name: [r[name] / r["false"] for r in per_round] for name in chosen if name != "false"},
        "tokens_per_round": {name: totals[name][0] / args.rounds for name in chosen},
    }


def compare_by_step(model, tokenizer, records, tc: TrainConfig, device: str, args, out: Path) -> dict[str, Any]:
    """The same comparison with the layouts taking turns at every step, on the very same batch: collation, forward,
    backward, gradient clipping and the optimizer step of each layout are timed back to back, so a load swing on a
    shared machine hits all of them alike (the Trainer's own loop, around them, is what `compare` keeps)."""
    import random

    base = model.get_base_model()
    attn = tc.base_model.attn_implementation
    chosen = layouts(attn, device)
    collators = {name: collator_for(tokenizer, choice, base) for name, (choice, _) in chosen.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.trainer.learning_rate)
    rows, rng = list(records), random.Random(0)
    seconds = dict.fromkeys(chosen, 0.0)
    tokens = 0
    model.train()
    for step in range(args.rounds * args.steps + 1):
        features = rng.sample(rows, tc.trainer.batch_size)
        names = list(chosen)[step % len(chosen) :] + list(chosen)[: step % len(chosen)]
        for name in names:
            base.set_attn_implementation(chosen[name][1])
            started = time.perf_counter()
            batch = {
                key: value.to(device) if hasattr(value, "to") else value
                for key, value in collators[name](features).items()
            }
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.trainer.max_grad_norm or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bench_shapes._sync()
            if step:  # the first step of each layout warms up
                seconds[name] += time.perf_counter() - started
        if step:
            tokens += sum(len(f["input_ids"]) for f in features)  # the same non-pad tokens for every layout
    base.set_attn_implementation(attn)
    return {
        "attn_implementation": attn,
        "layouts": {name: f"{c.strategy} on {kernel}: {c.reason}" for name, (c, kernel) in chosen.items()},
        "tokens_per_s": {name: tokens / s for name, s in seconds.items()},
        "speedup_vs_padding": {name: seconds["false"] / s for name, s in seconds.items()},
        "steps": args.rounds * args.steps,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="demo,opencalm_7b,llama2_70b")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="steps per layout and round (the first untimed)")
    parser.add_argument("--real-width", action="store_true", help="the presets' real widths (a GPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (two stall each other on a busy 2-core)")
    parser.add_argument(
        "--by",
        choices=("trainer", "step"),
        default="trainer",
        help="trainer: train.py's Trainer, layouts in turns of --steps; step: layouts in turn at every batch",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cache = Path(os.environ.get("MEDTUNE_CACHE", Path.home() / ".cache" / "medtune"))
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "steps": args.steps,
        "load_average_before": os.getloadavg(),
        "shapes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shape.split(","):
            started = time.perf_counter()
            setup = demo_setup(cache) if name == "demo" else shape_setup(name, args.real_width, device)
            measure = compare if args.by == "trainer" else compare_by_step
            results["shapes"][name] = measure(*setup, device, args, Path(tmp) / name)
            results["shapes"][name]["wall_s"] = time.perf_counter() - started
            speedups = results["shapes"][name]["speedup_vs_padding"]
            bench_shapes._progress(f"{name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in speedups.items()))
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
