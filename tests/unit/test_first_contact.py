"""What a new user meets first: typos, folders they own, a shared run dir, a missing evaluation set, odd files, a bad
dataset, a base model that cannot be loaded.

Each mistake stops with one clear line before anything is written, any weights load or W&B starts. (A model folder
the user owns, through the real train.py: integration/test_train_cli.py.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medtune.config import to_train_config
from medtune.errors import ConfigError, DataError
from medtune.jsonl import read_jsonl_objects
from medtune.run_dir import (
    RESOLVED_CONFIG,
    RESULTS_FILE,
    Preempted,
    RunState,
    claimed,
    effective_state,
    is_live,
    lifecycle,
    previous_run,
    read_status,
    write_status,
)
from medtune.sweep import cell_key
from medtune.tiny_paths import TINY_MARKER

from helpers import another_process_holding, train_job


def test_a_key_added_with_plus_is_checked_like_any_other(compose_config):
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer\.max_stepz'"):
        to_train_config(compose_config("train", "+trainer.max_stepz=3"))


def test_a_tiny_model_is_not_built_outside_the_cache(compose_config, tmp_path: Path):
    with pytest.raises(ConfigError, match="builds tiny models only inside cache_dir"):
        to_train_config(compose_config("train", f"base_model.path={tmp_path / 'not-there'}"))
    assert not (tmp_path / "not-there").exists()


def test_a_build_of_ours_or_an_empty_folder_may_be_replaced(compose_config, cache_dir: Path):
    ours = cache_dir / "models" / "old-build"
    ours.mkdir(parents=True, exist_ok=True)
    (ours / TINY_MARKER).write_text(json.dumps({"recipe_version": 0}))
    to_train_config(compose_config("train", f"base_model.path={ours}"))  # accepted: medtune made it
    empty = Path(str(ours) + "-empty")
    empty.mkdir(exist_ok=True)
    to_train_config(compose_config("train", f"base_model.path={empty}"))


def test_a_second_process_on_the_same_run_dir_stops(tmp_path: Path):
    with (
        another_process_holding(tmp_path / "run"),
        pytest.raises(ConfigError, match="in use by another running medtune process"),
        claimed(tmp_path / "run"),
    ):
        pass
    assert is_live(tmp_path / "run") is False  # the dead holder's lock is gone with its process
    with claimed(tmp_path / "run"):
        assert is_live(tmp_path / "run")


def test_a_second_evaluate_on_the_same_dir_stops_before_asking_anything(compose_config, tmp_path: Path):
    from medtune.evaluation.pipeline import run as evaluate_run
    from medtune.testing import OpenAIServer

    with OpenAIServer() as server:
        cfg = compose_config(
            "evaluate",
            "backend=openai",
            f"openai.base_url={server.base_url}",
            "openai.model=medtune-test",
            "wandb.mode=disabled",
            "eval.limit=2",
        )
        with another_process_holding(tmp_path / "eval"), pytest.raises(ConfigError, match="in use"):
            evaluate_run(cfg, tmp_path / "eval")
        assert server.request_count == 0 and not (tmp_path / "eval" / RESOLVED_CONFIG).exists()


def test_a_run_dir_holding_another_config_is_refused_naming_the_keys(tmp_path: Path):
    (tmp_path / RESOLVED_CONFIG).write_text("stage: sft\ntrainer: {max_steps: 10}\nwandb: {mode: offline}\n")
    mine = {"stage": "sft", "trainer": {"max_steps": 20}, "wandb": {"mode": "online"}}
    with pytest.raises(ConfigError, match=r"different config \(changed: trainer.max_steps\)"):
        previous_run(tmp_path, mine)  # wandb.* is bookkeeping: where a run is tracked, not what it computes


def test_a_run_dir_from_before_the_licence_field_continues(tmp_path: Path):
    """base_model.license (what the export's card says) came later: a run started without it is the same run."""
    (tmp_path / RESOLVED_CONFIG).write_text("stage: sft\nbase_model: {name: opencalm_7b}\n")
    mine = {"stage": "sft", "base_model": {"name": "opencalm_7b", "license": "cc-by-sa-4.0"}}
    assert previous_run(tmp_path, mine) is None  # no status yet: a fresh start in the same dir, not a refusal
    assert cell_key(mine) == cell_key({"stage": "sft", "base_model": {"name": "opencalm_7b"}})


def test_a_re_run_skips_a_finished_run_and_continues_an_interrupted_one(tmp_path: Path):
    config = {"stage": "sft", "trainer": {"max_steps": 10}}
    assert previous_run(tmp_path, config) is None  # nothing there: a new run
    (tmp_path / RESOLVED_CONFIG).write_text("stage: sft\ntrainer: {max_steps: 10}\n")
    write_status(tmp_path, RunState.running)
    assert effective_state(tmp_path) == RunState.preempted  # running, but no process holds it: killed
    assert previous_run(tmp_path, config) is None  # continued
    (tmp_path / RESULTS_FILE).write_text('{"objective": 0.5}')
    write_status(tmp_path, RunState.finished)
    assert previous_run(tmp_path, config) == {"objective": 0.5}


def test_lifecycle_records_how_a_run_ended(tmp_path: Path):
    with lifecycle(tmp_path):
        assert read_status(tmp_path)["status"] == RunState.running
    assert read_status(tmp_path)["status"] == RunState.finished
    for error, state in [(Preempted("stopped at step 3"), RunState.preempted), (ValueError("x"), RunState.failed)]:
        with pytest.raises(type(error)), lifecycle(tmp_path):
            raise error
        assert read_status(tmp_path) == {"status": state, "error": f"{type(error).__name__}: {error}"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["eval=igakuqa"], "needs eval.path"), (["eval=igakuqa", "eval.path={empty}"], "holds no <year>/ folders")],
)
def test_a_missing_evaluation_set_stops_before_weights_or_wandb(
    compose_config, tmp_path: Path, monkeypatch, overrides, message
):
    from medtune import training

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded before the evaluation set was checked")

    monkeypatch.setattr(training, "load_base_model", no_weights)
    (tmp_path / "empty").mkdir()
    cfg = compose_config("train", *(o.format(empty=tmp_path / "empty") for o in overrides))
    with pytest.raises((ConfigError, DataError), match=message):
        training.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "wandb").exists() and not (tmp_path / "run" / RESOLVED_CONFIG).exists()


def train_job_exit(cfg, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit status, stderr) of a user error in train.py's job, run in-process."""
    with pytest.raises(SystemExit) as exit_info:
        train_job(cfg, run_dir)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"instruction": "q", "output": "a"}\n{"output": "a"}\n',
            "records.jsonl:2: required field is missing (field 'instruction')",
        ),
        ("", "records.jsonl: no records"),
        (None, "records.jsonl: file does not exist"),
    ],
)  # malformed JSON, through the real train.py: integration/test_train_cli.py
def test_bad_dataset_stops_before_training_with_one_clear_line(compose_config, tmp_path, capsys, content, expected):
    records = tmp_path / "records.jsonl"
    if content is not None:
        records.write_text(content)
    run_dir = tmp_path / "run"
    code, stderr = train_job_exit(compose_config("train", "dataset=jsonl", f"dataset.path={records}"), run_dir, capsys)
    assert code == 2
    assert expected in stderr and "Traceback" not in stderr
    assert not (run_dir / "results.json").exists() and not (run_dir / "wandb").exists()


def test_unloadable_base_model_stops_with_a_clear_error(compose_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, stderr = train_job_exit(compose_config("train", "base_model=opencalm_7b"), run_dir, capsys)
    assert code == 2 and "Traceback" not in stderr
    assert "cyberagent/open-calm-7b" in stderr and "cannot be loaded" in stderr
    assert not (run_dir / "results.json").exists() and not (run_dir / "wandb").exists()


def test_json_errors_name_the_line_and_show_where(tmp_path: Path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "糖尿病の薬", "output": }\n')
    with pytest.raises(DataError) as err:
        list(read_jsonl_objects(path))
    assert str(err.value).startswith(f"{path}:2: malformed JSON: Expecting value at column 36")
    assert "near '" in str(err.value) and '"output": }' in str(err.value)


def test_a_byte_order_mark_is_accepted(tmp_path: Path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"instruction": "a", "output": "b"}\n')
    assert list(read_jsonl_objects(path)) == [(1, {"instruction": "a", "output": "b"})]


def test_a_folder_given_as_a_file_is_called_a_folder(tmp_path: Path):
    with pytest.raises(DataError, match="is a directory; a file was expected"):
        list(read_jsonl_objects(tmp_path))


def test_training_defaults_the_cuda_allocator_but_keeps_the_users(monkeypatch):
    from medtune.cli import CUDA_ALLOC_DEFAULT, CUDA_ALLOC_ENV, default_cuda_allocator

    monkeypatch.delenv(CUDA_ALLOC_ENV, raising=False)
    default_cuda_allocator()
    assert os.environ[CUDA_ALLOC_ENV] == CUDA_ALLOC_DEFAULT == "expandable_segments:True"
    monkeypatch.setenv(CUDA_ALLOC_ENV, "max_split_size_mb:128")
    default_cuda_allocator()
    assert os.environ[CUDA_ALLOC_ENV] == "max_split_size_mb:128"
