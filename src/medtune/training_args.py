"""Config → the Trainer's TrainingArguments: every training knob lands here.

Free of W&B and API imports, so bench/bench_shapes.py builds exactly train.py's arguments on a bare GPU machine.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from medtune.config import TrainConfig


def training_arguments(tc: TrainConfig, output_dir: Path, evaluates: bool) -> TrainingArguments:
    """The Trainer's arguments for a config: every training knob lands here (bench/bench_shapes.py uses it too)."""
    t = tc.trainer
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a fraction of max_steps
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler,
        optim=t.optim,
        max_grad_norm=t.max_grad_norm,
        bf16=t.mixed_precision == "bf16",
        fp16=t.mixed_precision == "fp16",
        use_liger_kernel=t.use_liger_kernel,
        torch_compile=t.torch_compile,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        **checkpointing_args(t.gradient_checkpointing),
        logging_steps=t.logging_steps,
        eval_strategy="steps" if t.eval_steps > 0 and evaluates else "no",
        eval_steps=t.eval_steps or None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        full_determinism=t.deterministic,
        dataloader_num_workers=t.dataloader_workers,
        dataloader_pin_memory=torch.accelerator.is_available(),  # pinned pages only help copies to an accelerator
        include_num_input_tokens_seen="non_padding",
        report_to="none",  # medtune logs to W&B itself, under its own metric names
        disable_tqdm=True,
        remove_unused_columns=False,
    )


def checkpointing_args(enabled: bool) -> dict[str, Any]:
    """Non-reentrant activation checkpointing under the TrainingArguments name this transformers knows.

    transformers 5.2x renamed `gradient_checkpointing*` to `activation_checkpointing*` and warns on the old
    names; earlier 5.x releases only know the old ones. Non-reentrant checkpointing needs no grad-requiring
    input (so no hook on a frozen base) and is the mode PyTorch recommends.
    """
    new = "activation_checkpointing" in {f.name for f in fields(TrainingArguments)}
    name = "activation_checkpointing" if new else "gradient_checkpointing"
    if not enabled:
        return {name: False}
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}
