"""Training-core benchmarks, each a ratio measured in one process run (figures go to BENCHMARKS.md).

    python bench/bench_train.py                 # harness overhead and packing, tiny GPT-NeoX, demo data
    python bench/bench_train.py --steps 60 --json /tmp/bench_train.json

1. Harness overhead: medtune's Trainer-based step (its collator, callbacks, W&B logging disabled) against a
   minimal hand-written PyTorch loop on the same model, batches and sequence lengths: tokens/s ratio.
2. Packing: non-pad tokens/s with dataset.packing=auto's layout on sdpa (best-fit bins) vs padding to the batch's
   longest example (bench/bench_packing.py compares the layouts side by side, interleaved).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from medtune.config import BaseModelConfig, DatasetConfig, QuantizationConfig
from medtune.data import build_collator, build_datasets, load_splits
from medtune.models import load_base_model
from medtune.packing import choose_packing
from medtune.tiny import tiny_base_model


def fresh_model(base: BaseModelConfig):
    torch.manual_seed(0)
    model, tokenizer = load_base_model(base, QuantizationConfig())
    model.config.use_cache = False
    return model, tokenizer


def trainer_tokens_per_s(base, dataset, collator, steps: int, batch_size: int, out: Path) -> float:
    """Tokens/s of medtune's Trainer configuration (the code path train.py uses) over `steps` steps."""
    model, tokenizer = fresh_model(base)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-3,
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        seed=0,
        data_seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    return trainer.state.num_input_tokens_seen / (time.perf_counter() - start)


def plain_loop_tokens_per_s(base, dataset, collator, steps: int, batch_size: int) -> float:
    """The baseline: the same batches through a bare AdamW loop with no framework around it."""
    model, _ = fresh_model(base)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rows = list(dataset)
    model.train()
    tokens, start = 0, time.perf_counter()
    for step in range(steps):
        first = (step * batch_size) % (len(rows) - batch_size)
        batch = collator(rows[first : first + batch_size])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cache = Path(os.environ.get("MEDTUNE_CACHE", Path.home() / ".cache" / "medtune"))
    base = tiny_base_model("tiny_gptneox", cache)
    model, tokenizer = fresh_model(base)
    ds = DatasetConfig(source="demo", max_input_tokens=256, max_target_tokens=128)
    train_set, _ = build_datasets(load_splits(ds, "sft", seed=0), tokenizer, ds, "sft")
    auto = choose_packing("auto", "sdpa").strategy
    padded, packed = build_collator(tokenizer), build_collator(tokenizer, auto, model.config.hidden_size)
    plain, ours, ours_packed = 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(args.repeats):  # interleaved, best of N: a busy machine slows whichever runs then
            plain = max(plain, plain_loop_tokens_per_s(base, train_set, padded, args.steps, args.batch_size))
            out = Path(tmp) / str(attempt)
            ours = max(ours, trainer_tokens_per_s(base, train_set, padded, args.steps, args.batch_size, out / "a"))
            ours_packed = max(
                ours_packed, trainer_tokens_per_s(base, train_set, packed, args.steps, args.batch_size, out / "b")
            )
    results = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "plain_loop_tokens_per_s": plain,
        "medtune_tokens_per_s": ours,
        "harness_ratio": ours / plain,
        "packed_tokens_per_s": ours_packed,
        "packing_speedup": ours_packed / ours,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
