"""Pieces of the training run that need no model."""

from __future__ import annotations

from medtune.run_dir import changed_keys
from medtune.training import last_complete_checkpoint


def test_resume_skips_a_checkpoint_whose_save_was_interrupted(tmp_path):
    for step, complete in ((10, True), (20, True), (30, False)):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"")
        if complete:
            (checkpoint / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_changed_keys_are_found_at_any_depth():
    old = {"stage": "sft", "trainer": {"max_steps": 5, "lr": 1.0}, "resume": None}
    new = {"stage": "pretrain", "trainer": {"max_steps": 6, "lr": 1.0}, "resume": "/run", "extra": 1}
    assert changed_keys(new, old) == ["extra", "resume", "stage", "trainer.max_steps"]
    assert changed_keys(old, old) == []


def test_the_qlora_preset_reaches_the_trainer_with_every_knob_and_no_deprecation_warning(compose_config, tmp_path):
    import warnings

    from medtune.config import to_train_config
    from medtune.training_args import training_arguments

    tc = to_train_config(
        compose_config(
            "train",
            "experiment=jmedlora_llama2_qlora",
            "dataset.path=/d.jsonl",
            "eval.path=/e",
            "trainer.torch_compile=true",
            "trainer.mixed_precision=no",  # bf16 arguments need a GPU
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers' renamed arguments warn with FutureWarning
        args = training_arguments(tc, tmp_path, evaluates=False)
    assert (args.optim, args.max_grad_norm, args.lr_scheduler_type) == ("paged_adamw_32bit", 0.3, "constant")
    assert args.train_sampling_strategy == "group_by_length" and args.torch_compile and not args.use_liger_kernel
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert args.warmup_steps == 0.03


def test_checkpointing_off_passes_no_kwargs():
    from medtune.training_args import checkpointing_args

    assert list(checkpointing_args(False).values()) == [False]
