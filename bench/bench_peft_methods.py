"""What each tuning method costs against LoRA on one tiny base: trainable parameters, initialisation time and
training-step time, each as a ratio to LoRA's in the same process (figures go to BENCHMARKS.md).
    python bench/bench_peft_methods.py                          # tiny Llama, the demo's adapter (r 32, all-linear)
    python bench/bench_peft_methods.py --base tiny_gptneox --steps 20 --json /tmp/bench_peft.json

Initialisation = `attach_adapter` + `prepare_adapter` from a loaded base (PiSSA's SVD, OLoRA's QR, LoftQ's fit,
EVA's data pass over that batch, repeated). A step = forward, backward and the method's optimizer step on one fixed
batch of 8 × 64 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainingArguments

from medtune.adapters import loraplus_optimizer, prepare_adapter
from medtune.config import compose_train, to_train_config
from medtune.models import attach_adapter, count_parameters, load_base_model
from medtune.tiny import tiny_base_model

METHODS = ("lora", "qlora", "rslora", "pissa", "olora", "loftq", "loraplus", "vera", "eva")


def measure(base_group: str, tuning: str, steps: int, cache: str, work: Path) -> dict[str, float]:
    tc = to_train_config(compose_train(f"base_model={base_group}", f"tuning={tuning}", f"cache_dir={cache}"))
    base = tiny_base_model(base_group, cache)
    model, _ = load_base_model(base, tc.quantization)
    model.config.use_cache = False
    torch.manual_seed(0)
    batch = torch.randint(5, 800, (8, 64))
    batches = [{"input_ids": batch, "attention_mask": torch.ones_like(batch), "labels": batch}] * 4
    (work / tuning).mkdir()
    start = time.perf_counter()
    model = attach_adapter(model, tc.adapter, quantized=tc.quantization.mode != "none")
    prepare_adapter(model, tc.adapter, lambda: batches, work / tuning, main=True)
    init_s = time.perf_counter() - start
    args = TrainingArguments(output_dir=str(work), learning_rate=tc.trainer.learning_rate, report_to="none")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = loraplus_optimizer(model, tc.adapter, args) or torch.optim.AdamW(trainable, lr=args.learning_rate)
    model.train()
    for step in range(steps + 2):  # 2 warm-up steps, not timed
        if step == 2:
            start = time.perf_counter()
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return {"trainable": count_parameters(model)[0], "init_s": init_s, "step_s": (time.perf_counter() - start) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="tiny_llama")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cache = os.environ.get("MEDTUNE_CACHE", str(Path.home() / ".cache" / "medtune"))
    with tempfile.TemporaryDirectory() as work:
        figures = {tuning: measure(args.base, tuning, args.steps, cache, Path(work)) for tuning in METHODS}
    lora = figures["lora"]
    print(f"{'tuning':<10} {'trainable':>10} {'× LoRA':>7} {'init s':>8} {'× LoRA':>7} {'step ms':>8} {'× LoRA':>7}")
    for tuning, f in figures.items():
        print(
            f"{tuning:<10} {f['trainable']:>10,} {f['trainable'] / lora['trainable']:>7.2f} {f['init_s']:>8.2f} "
            f"{f['init_s'] / lora['init_s']:>7.1f} {1000 * f['step_s']:>8.1f} {f['step_s'] / lora['step_s']:>7.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
