"""`medtune export` of a QLoRA run: how close the merged folder is to the run's model, and what exporting costs.

1. Max |Δ logits| of the exported (dequantized, merged) model on the run's own QA prompts against: the 4-bit base +
   adapter as the run scored it, the dequantized base + the unmerged adapter, and (the mistake the export avoids)
   the original full-precision base + adapter.
2. Wall time of the merged export and of --adapter-only, as a ratio to loading the run's model once
   (load_trained: what evaluate.py run_dir= pays).

python train.py base_model=tiny_llama tuning=qlora trainer.max_steps=10 eval.limit=24 hydra.run.dir=/tmp/qlora
python bench/bench_export.py /tmp/qlora --prompts 8 --json /tmp/export.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from medtune.cli import quiet_known_warnings
from medtune.config import QuantizationConfig
from medtune.export.command import export
from medtune.export.merge import export_dtype
from medtune.jsonl import read_jsonl_objects
from medtune.models import load_base_model, load_trained, torch_dtype
from medtune.run_dir import MODEL_SUBDIR, PREDICTIONS_FILE, TUNED_EVAL_SUBDIR


def logits(model, tokenizer, prompts: list[str]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [model(**tokenizer(p, return_tensors="pt").to(model.device)).logits[0].float().cpu() for p in prompts]


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished QLoRA train.py run dir")
    parser.add_argument("--prompts", type=int, default=8, help="QA prompts of the run to compare logits on")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    quiet_known_warnings()
    prompts = [row["prompt"] for _, row in read_jsonl_objects(args.run_dir / TUNED_EVAL_SUBDIR / PREDICTIONS_FILE)]
    prompts = prompts[: args.prompts]
    load_s, (as_trained, tokenizer, tc) = timed(lambda: load_trained(args.run_dir))
    with tempfile.TemporaryDirectory() as tmp:
        merged_s, _ = timed(lambda: export(args.run_dir, Path(tmp) / "merged"))
        adapter_s, _ = timed(lambda: export(args.run_dir, Path(tmp) / "adapter", adapter_only=True))
        exported = AutoModelForCausalLM.from_pretrained(Path(tmp) / "merged", device_map=as_trained.device)
        got = logits(exported, AutoTokenizer.from_pretrained(Path(tmp) / "merged"), prompts)
    base, _ = load_base_model(tc.base_model, tc.quantization)
    dequantized = PeftModel.from_pretrained(
        base.dequantize(dtype=torch_dtype(export_dtype(tc))), str(args.run_dir / MODEL_SUBDIR)
    )
    original = PeftModel.from_pretrained(
        load_base_model(tc.base_model, QuantizationConfig())[0], str(args.run_dir / MODEL_SUBDIR)
    )
    figures = {
        "run": str(args.run_dir),
        "base_model": tc.base_model.name,
        "export_dtype": export_dtype(tc),
        "prompts": len(prompts),
        "max_abs_logit": max(t.abs().max().item() for t in got),
        "max_diff_vs_4bit_plus_adapter": max_difference(got, logits(as_trained, tokenizer, prompts)),
        "max_diff_vs_dequantized_plus_adapter": max_difference(got, logits(dequantized, tokenizer, prompts)),
        "max_diff_vs_original_base_plus_adapter": max_difference(got, logits(original, tokenizer, prompts)),
        "load_trained_s": load_s,
        "export_merged_s": merged_s,
        "export_adapter_only_s": adapter_s,
        "merged_over_load": merged_s / load_s,
        "adapter_only_over_load": adapter_s / load_s,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
