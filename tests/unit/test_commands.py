"""The `medtune` console command, in-process: the subcommand table, Hydra's own flags, a user's conf/ beside the
shipped groups, and one clear line for what it does not offer. (CI installs the wheel and runs it for real.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from medtune import commands
from medtune.config import CONF_DIR


@pytest.fixture
def in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["medtune"])  # main() sets it for the subcommand
    yield tmp_path
    GlobalHydra.instance().clear()  # @hydra.main leaves Hydra initialized


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]):
    commands.main([])
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in commands.COMMANDS)


def test_train_takes_hydra_flags_from_any_directory(in_empty_dir: Path, capsys: pytest.CaptureFixture[str]):
    commands.main(["train", "--cfg", "job", "trainer.max_steps=3"])
    out = capsys.readouterr().out
    assert "max_steps: 3" in out and "name: tiny_gptneox" in out
    assert not any(in_empty_dir.iterdir())  # --cfg composes only: nothing written
    assert (CONF_DIR / "train.yaml").is_file()


def test_a_user_conf_dir_adds_an_experiment_beside_the_shipped_groups(
    in_empty_dir: Path, capsys: pytest.CaptureFixture[str]
):
    (in_empty_dir / "conf" / "experiment").mkdir(parents=True)
    (in_empty_dir / "conf" / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  max_steps: 7\n")
    commands.main(["train", "experiment=mine", "base_model=tiny_llama", "--cfg", "job"])
    out = capsys.readouterr().out
    assert "max_steps: 7" in out and "name: tiny_llama" in out  # the user's experiment, a shipped group


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--shell-completion", "install=bash"], "shell completion is not offered"),
        (["status", "."], ". holds no multirun cells (.hydra/overrides.yaml)"),  # medtune.sweep's own line and exit
        (["fit"], "unknown command 'fit'; one of: train, evaluate, generate-data, report, status, export"),
        (["export", ".", "--out", "x"], ". is not a train.py run dir (no resolved_config.yaml)."),
    ],
)
def test_what_cannot_run_is_one_line(
    argv: list[str], message: str, in_empty_dir: Path, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit) as exit_info:
        commands.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"medtune: error: {message}" + (
        ": Hydra's completion cannot see medtune's subcommands\n" if "completion" in message else "\n"
    )
