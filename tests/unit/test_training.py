"""Pieces of the training run that need no model."""

from __future__ import annotations

from medtune.training import changed_keys, last_complete_checkpoint


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
