"""Real-shape benchmark with random weights, no downloads: memory, speed, packing and scoring where users run it.

    python bench/bench_shapes.py --shape opencalm_7b,llama2_70b --layers 2,4,8 --out results.json   # one GPU
    python bench/bench_shapes.py --smoke --out /tmp/shapes.json                                     # CPU, toy width

Per shape (OpenCALM-7B: GPT-NeoX 32 x 4096; Llama-2-70B: 80 x 8192, 8 KV heads) the model is built with only
N layers, straight on the device, and trained a few steps with its paper preset exactly as train.py would
(same factories in medtune.models, same TrainingArguments from medtune.training): LoRA in bf16 for OpenCALM,
QLoRA (NF4, double quantization) for Llama 2. Per depth it reports peak CUDA memory (allocated, reserved),
seconds per step and tokens/s, then extrapolates memory and step time linearly to the full depth, beside the
floor computed from the shape (weights + LoRA parameters, gradients and AdamW states; activations excluded).
At the deepest depth it compares padding vs padding-free (the batch flattened into one row; sdpa masks it) vs
best-fit bins on sdpa vs the packing dataset.packing=auto takes on the varlen kernel there (one row on
flash_attention_2 when installed, else one bucketed row on flex_attention), and
log-likelihood vs generate scoring of the demo questions. The record lengths are random, drawn like the
study's records truncated at 512 prompt + 512 response tokens. Every measurement that fails is recorded with
its error and the rest go on; --out is rewritten after each one, so a partial run leaves its figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import transformers
from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainerCallback
from transformers.trainer_utils import SaveStrategy

from medtune import demo_assets
from medtune.config import ALL_LINEAR, TrainConfig, to_train_config
from medtune.data import IGNORE_INDEX, build_collator, collator_for
from medtune.enums import PackingStrategy
from medtune.models import attach_adapter, build_quantization_config, torch_dtype
from medtune.packing import choose_packing
from medtune.tiny import train_tokenizer
from medtune.training_args import training_arguments

REPO = Path(__file__).resolve().parents[1]
GB = 1e9
NF4_BYTES = 4.127 / 8  # per weight: 4-bit codes + double-quantized block constants (QLoRA paper, sec. 3)
LORA_STATE_BYTES = 16  # per LoRA parameter: fp32 weight + fp32 grad + two fp32 AdamW moments


@dataclass(frozen=True)
class Shape:
    preset: str  # conf/experiment/<preset>.yaml: the method and hyper-parameters trained
    arch: str
    full_layers: int
    dims: dict[str, Any]  # the real config (minus depth)
    smoke_dims: dict[str, Any]  # toy width for --smoke


SHAPES = {
    # cyberagent/open-calm-7b: GPT-NeoX, 32 layers x 4096, 32 heads, MLP 16,384, vocabulary 52,224.
    "opencalm_7b": Shape(
        preset="jmedlora_opencalm",
        arch="gpt_neox",
        full_layers=32,
        dims={
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "intermediate_size": 16384,
            "vocab_size": 52224,
            "max_position_embeddings": 2048,
        },
        smoke_dims={"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 2048},
    ),
    # meta-llama/Llama-2-70b-chat-hf: 80 layers x 8192, 64 query / 8 KV heads, MLP 28,672, vocabulary 32,000.
    "llama2_70b": Shape(
        preset="jmedlora_llama2_qlora",
        arch="llama",
        full_layers=80,
        dims={
            "hidden_size": 8192,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "intermediate_size": 28672,
            "vocab_size": 32000,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
        },
        smoke_dims={
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 256,
            "vocab_size": 2048,
        },
    ),
}


def preset_config(preset: str, smoke: bool) -> TrainConfig:
    """The preset as train.py composes it; --smoke shrinks lengths and drops GPU-only choices."""
    from hydra import compose, initialize_config_dir

    from medtune.config import register_configs

    overrides = [f"experiment={preset}", "dataset.path=unused.jsonl", "eval.path=unused", "cache_dir=unused"]
    if smoke:  # CPU: fp32, no paged (CUDA managed memory) optimizer, short records
        overrides += [
            "base_model.dtype=float32",
            "quantization.compute_dtype=float32",
            "trainer.mixed_precision=no",
            "trainer.optim=adamw_torch",
            "trainer.batch_size=4",
            "dataset.max_input_tokens=32",
            "dataset.max_target_tokens=32",
        ]
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return to_train_config(compose(config_name="train", overrides=overrides))


def model_config(shape: Shape, layers: int, smoke: bool):
    dims = shape.smoke_dims if smoke else shape.dims
    return AutoConfig.for_model(
        shape.arch, num_hidden_layers=layers, tie_word_embeddings=False, use_cache=False, **dims
    )


def build_model(shape: Shape, layers: int, tc: TrainConfig, device: str, smoke: bool):
    """Random weights built on the device; NF4 is quantized there by transformers' own loader (no disk)."""
    config = model_config(shape, layers, smoke)
    dtype = torch_dtype(tc.base_model.dtype)
    attn = tc.base_model.attn_implementation
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    quantized = tc.quantization.mode != "none"
    if quantized:
        weights = model.state_dict()
        model = type(model).from_pretrained(
            None,
            config=config,
            state_dict=weights,
            quantization_config=build_quantization_config(tc.quantization),
            dtype=dtype,
            device_map={"": 0 if device == "cuda" else "cpu"},
            attn_implementation=attn,
        )
        del weights
    return attach_adapter(model, tc.adapter, quantized)


def study_like_records(n: int, max_input: int, max_target: int, vocab: int, seed: int = 0) -> Dataset:
    """Random token records with prompt and response lengths spread up to the preset's 512/512 limits
    (an assumed distribution: uniform from a short question to a full 512-token journal excerpt)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = [rng.randrange(vocab) for _ in range(rng.randint(max_input // 8, max_input))]
        target = [rng.randrange(vocab) for _ in range(rng.randint(max_target // 32, max_target))]
        rows.append({"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target})
    return Dataset.from_list(rows)


class StepClock(TrainerCallback):
    """Wall time of each optimizer step (device-synchronized) and the non-pad tokens seen after it."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        _sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.seconds.append(time.perf_counter() - self._start)
        self.tokens.append(state.num_input_tokens_seen)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_steps(
    model, tc: TrainConfig, records: Dataset, collator, steps: int, out: Path, tokenizer=None
) -> dict[str, float]:
    """`steps` optimizer steps with the preset's TrainingArguments; the first one (warm-up) is not timed.

    With the tokenizer the Trainer counts a packed row's padding tail (pad tokens, no attention mask) as padding."""
    trainer_cfg = replace(tc.trainer, max_steps=steps, logging_steps=10**6, save_steps=10**6)
    args = training_arguments(replace(tc, trainer=trainer_cfg), out, evaluates=False)
    args.save_strategy = SaveStrategy.NO  # train.py saves at the end; a measurement must not time a checkpoint
    clock = StepClock()
    _free()  # the bf16 copy a 4-bit model was quantized from must not count in the reserved peak
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=records,
        data_collator=collator,
        callbacks=[clock],
        processing_class=tokenizer,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = clock.seconds[1:] or clock.seconds
    tokens = clock.tokens[-1] - (clock.tokens[0] if len(clock.seconds) > 1 else 0)
    result = {"step_s": sum(timed) / len(timed), "tokens_per_s": tokens / sum(timed)}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        result |= {
            "peak_allocated_gb": torch.cuda.max_memory_allocated() / GB,
            "peak_reserved_gb": torch.cuda.max_memory_reserved() / GB,
            "device_used_gb": (total - free) / GB,  # includes the paged optimizer's managed memory on the GPU
        }
    return result


def memory_floor_gb(shape: Shape, tc: TrainConfig, smoke: bool) -> dict[str, float]:
    """Memory the full-depth model needs before activations, counted on a meta-device copy of the shape."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config(shape, shape.full_layers, smoke))
    linear = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in name}
    linear_params = sum(m.weight.numel() for m in linear.values())
    other_params = sum(p.numel() for p in model.parameters()) - linear_params
    targets = set(tc.adapter.target_modules)
    lora_params = sum(
        tc.adapter.r * (m.in_features + m.out_features)
        for name, m in linear.items()
        if ALL_LINEAR in targets or name.rsplit(".", 1)[-1] in targets  # `linear` already leaves out the output layer
    )
    if tc.quantization.mode == "nf4":  # peft's prepare_model_for_kbit_training keeps the rest in fp32
        weights = linear_params * NF4_BYTES + other_params * 4
    else:
        weights = (linear_params + other_params) * torch_dtype(tc.base_model.dtype).itemsize
    lora = lora_params * LORA_STATE_BYTES
    # With checkpointing each layer keeps only its input (batch x tokens x hidden, in the compute dtype) for the
    # backward pass; the one layer being recomputed at a time adds comparatively little.
    tokens = tc.trainer.batch_size * (tc.dataset.max_input_tokens + tc.dataset.max_target_tokens)
    compute_bytes = torch_dtype(
        tc.quantization.compute_dtype if tc.quantization.mode != "none" else tc.base_model.dtype
    )
    checkpoints = shape.full_layers * tokens * model.config.hidden_size * compute_bytes.itemsize
    return {
        "weights_gb": weights / GB,
        "lora_state_gb": lora / GB,
        "floor_gb": (weights + lora) / GB,
        "checkpointed_activations_gb": checkpoints / GB,
        "floor_with_activations_gb": (weights + lora + checkpoints) / GB,
    }


def extrapolate(points: list[tuple[int, float]], depth: int) -> float | None:
    """Least-squares line through (layers, value), read at `depth`."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y + slope * (depth - mean_x)


def varlen_attention(device: str) -> str:
    """The kernel that reads packed position ids as separate sequences on this machine."""
    from transformers.utils import is_flash_attn_2_available

    if device != "cuda":
        return "sdpa"  # flex_attention has no CPU backward; the smoke run only exercises the code path
    return "flash_attention_2" if is_flash_attn_2_available() else "flex_attention"


def compare_batching(model, tc: TrainConfig, tokenizer, records: Dataset, steps: int, device: str, out: Path):
    """Non-pad tokens/s of padding, padding-free (one flattened row, sdpa), best-fit bins (what dataset.packing=auto
    takes on sdpa) and the packing auto takes on the varlen kernel this machine has, same records."""
    base = model.get_base_model()
    grouping_off = replace(tc, trainer=replace(tc.trainer, group_by_length=False))  # padding as sampled
    kernel = varlen_attention(device)
    modes = {
        "padding": (PackingStrategy.padding, "sdpa"),
        "padding_free_sdpa": (PackingStrategy.varlen, "sdpa"),
        "bins_sdpa": (PackingStrategy.bins, "sdpa"),  # rows no longer than the longest example (auto on a GPU)
    }
    if kernel != "sdpa":
        strategy = choose_packing("auto", kernel, device=device).strategy
        modes[f"{strategy}_{kernel}"] = (strategy, kernel)
    results: dict[str, Any] = {}
    for mode, (strategy, attn) in modes.items():
        results[mode] = measure(
            f"batching {mode}",
            lambda strategy=strategy, attn=attn, mode=mode: _batching_run(
                base, model, grouping_off, tokenizer, records, strategy, attn, steps, out / mode
            ),
        )
    base.set_attn_implementation(tc.base_model.attn_implementation)
    padded = results["padding"].get("tokens_per_s")
    for figures in results.values():
        if padded and "tokens_per_s" in figures:
            figures["speedup_vs_padding"] = figures["tokens_per_s"] / padded
    return results


def _batching_run(base, model, tc, tokenizer, records, strategy: PackingStrategy, attn: str, steps: int, out: Path):
    base.set_attn_implementation(attn)
    collator = build_collator(tokenizer, strategy, base.config.hidden_size)
    return train_steps(model, tc, records, collator, steps, out, tokenizer)


def preset_collator(tokenizer, tc: TrainConfig, model):
    """The collator train.py would build for the preset (its dataset.packing, decided for its kernel and device)."""
    device = next(model.parameters()).device.type
    choice = choose_packing(tc.dataset.packing, tc.base_model.attn_implementation, tc.stage, device=device)
    return collator_for(tokenizer, choice, model)


def compare_scoring(model, tokenizer, questions: int, smoke: bool) -> dict[str, Any]:
    """Questions/s of log-likelihood vs generate scoring on the demo questions (medtune's own scorer)."""
    from medtune.config import EvalConfig
    from medtune.evaluation.local import LocalBackend
    from medtune.evaluation.prompts import build_prompts
    from medtune.qa_data import load_questions

    results: dict[str, Any] = {}
    for mode in ("loglik", "generate"):
        cfg = EvalConfig(source="demo", mode=mode, limit=questions, max_new_tokens=8 if smoke else 48)
        qs = load_questions(cfg)
        prompts = build_prompts(qs, cfg)

        def score(cfg=cfg, qs=qs, prompts=prompts) -> dict[str, float]:
            backend = LocalBackend(model, tokenizer, cfg)
            backend.answer(qs[: cfg.batch_size], prompts[: cfg.batch_size])  # warm-up
            _sync()
            start = time.perf_counter()
            backend.answer(qs, prompts)
            _sync()
            return {"questions_per_s": len(qs) / (time.perf_counter() - start), "max_new_tokens": cfg.max_new_tokens}

        results[mode] = measure(f"scoring {mode}", score)
    if "questions_per_s" in results["loglik"] and "questions_per_s" in results["generate"]:
        results["loglik_speedup"] = results["loglik"]["questions_per_s"] / results["generate"]["questions_per_s"]
    return results


def measure(label: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement; a failure is recorded with its error and the benchmark goes on."""
    start = time.perf_counter()
    try:
        figures = fn()
    except Exception as err:  # one failing measurement must not lose the others
        traceback.print_exc()
        figures = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
    figures["wall_s"] = time.perf_counter() - start
    _progress(f"{label}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items()))
    return figures


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _progress(line: str) -> None:
    print(f"[bench_shapes {time.strftime('%H:%M:%S')}] {line}", flush=True)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_shape(name: str, layers: list[int], args: argparse.Namespace, device: str, save: Callable[[], None], report):
    """Every depth of one shape, then the batching and scoring comparisons on the deepest model."""
    shape = SHAPES[name]
    tc = preset_config(shape.preset, args.smoke)
    report |= {
        "preset": shape.preset,
        "method": f"{tc.adapter.method} r={tc.adapter.r} quantization={tc.quantization.mode}",
        "batch_size": tc.trainer.batch_size,
        "max_tokens": tc.dataset.max_input_tokens + tc.dataset.max_target_tokens,
        "full_layers": shape.full_layers,
        "floor": memory_floor_gb(shape, tc, args.smoke),
        "depths": [],
    }
    vocab = (shape.smoke_dims if args.smoke else shape.dims)["vocab_size"]
    records = study_like_records(
        tc.trainer.batch_size * (args.steps + 1), tc.dataset.max_input_tokens, tc.dataset.max_target_tokens, vocab
    )
    if not args.smoke:  # a toy width on the CPU has no CUDA context or kernel choice to pay for before timing
        warm_up(shape, min(layers), tc, records, args, device)
        _free()
    for depth in layers:
        model = None

        def one_depth(depth=depth) -> dict[str, Any]:
            nonlocal model
            model = build_model(shape, depth, tc, device, args.smoke)
            collator = preset_collator(args.tokenizer, tc, model)
            return train_steps(model, tc, records, collator, args.steps, Path(args.tmp) / f"{name}-{depth}")

        report["depths"].append({"layers": depth} | measure(f"{name} {depth} layers", one_depth))
        save()
        if depth == max(layers) and model is not None:
            # measure() again around each comparison: a missing import there must not lose the extrapolation
            report["batching"] = measure(
                f"{name} batching",
                lambda m=model: compare_batching(
                    m, tc, args.tokenizer, records, args.steps, device, Path(args.tmp) / name
                ),
            )
            save()
            report["scoring"] = measure(
                f"{name} scoring", lambda m=model: compare_scoring(m, args.tokenizer, args.questions, args.smoke)
            )
            save()
        del model
        _free()
    report["extrapolated"] = {
        key: extrapolate([(d["layers"], d[key]) for d in report["depths"] if key in d], shape.full_layers)
        for key in ("peak_allocated_gb", "peak_reserved_gb", "device_used_gb", "step_s")
    }
    full = ", ".join(f"{key}={_fmt(value)}" for key, value in report["extrapolated"].items())
    _progress(f"{name} extrapolated to {shape.full_layers} layers: {full}; floor {report['floor']['floor_gb']:.1f} GB")
    save()


def warm_up(shape: Shape, depth: int, tc: TrainConfig, records: Dataset, args: argparse.Namespace, device: str) -> None:
    """One untimed run at the smallest depth, so CUDA context, cuBLAS handles and kernel selection for the
    record lengths are paid before the first measured depth (otherwise its steps are several times slower)."""
    model = build_model(shape, depth, tc, device, args.smoke)
    collator = preset_collator(args.tokenizer, tc, model)
    out = Path(args.tmp) / "warm-up"
    measure(f"{shape.preset} warm-up", lambda: train_steps(model, tc, records, collator, args.steps, out))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="opencalm_7b,llama2_70b", help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--layers", default="2,4,8", help="comma-separated depths to build and train")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per measurement (first is warm-up)")
    parser.add_argument("--questions", type=int, default=16, help="demo questions per scoring mode")
    parser.add_argument("--smoke", action="store_true", help="toy width on the CPU: the same code in seconds")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    names = args.shape.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        parser.error(f"unknown --shape {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    layers = sorted(int(n) for n in args.layers.split(","))
    if args.smoke:
        layers, args.steps, args.questions = [1, 2], 2, 8
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    transformers.utils.logging.disable_progress_bar()
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "smoke": args.smoke,
        "steps": args.steps,
        "shapes": {},
    }

    def save() -> None:
        args.out.write_text(json.dumps(results, indent=2))

    # A tokenizer for padding and for the scored questions: ids below both vocabularies (the weights are random).
    args.tokenizer = train_tokenizer(demo_assets.corpus_path())
    threads = torch.get_num_threads()
    if args.smoke:
        torch.set_num_threads(1)  # toy widths gain nothing from threads, and idle threads spin on a busy machine
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        for name in names:
            results["shapes"][name] = {}
            try:
                run_shape(name, layers, args, device, save, results["shapes"][name])
            except Exception as err:  # a shape that cannot even start is recorded, the next one still runs
                traceback.print_exc()
                results["shapes"][name]["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
            save()
    torch.set_num_threads(threads)  # the smoke run is also called in-process by the tests
    _progress(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
