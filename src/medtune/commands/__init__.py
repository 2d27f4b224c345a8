"""The `medtune` console command: one subcommand per entry point, each taking exactly what its script takes.

    medtune train trainer.max_steps=20                 # = python train.py trainer.max_steps=20 (Hydra: -m, --cfg ...)
    medtune evaluate run_dir=outputs/2026-01-01/12-00-00-000000
    medtune generate-data source.paths=[notes.txt] dry_run=true
    medtune report multirun/2026-01-01/12-00-00-000000
    medtune status multirun/2026-01-01/12-00-00-000000   # = python -m medtune.sweep status ...
    medtune export outputs/2026-01-01/12-00-00-000000 --out exports/my-model   # = python -m medtune.export ...

Outputs go under the working directory, as for the scripts. A ./conf folder there (or `--config-dir DIR`) adds
config groups and experiments beside the shipped ones. Modules:
    hydra_entry    @hydra.main on the shipped conf/ (medtune.config.CONF_DIR: wheel medtune/conf, clone conf/)
    train          `medtune train` / train.py
    evaluate       `medtune evaluate` / evaluate.py
    generate_data  `medtune generate-data` / generate_data.py
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medtune.cli import fail


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose main() reads sys.argv as its script or `python -m` would; its --help line."""

    module: str
    summary: str
    leading: tuple[str, ...] = ()  # arguments placed before the user's (`medtune status D` = `medtune.sweep status D`)


# Another package plugs in with one line.
COMMANDS: dict[str, Command] = {
    "train": Command("medtune.commands.train", "instruction-tune or pretrain a base model (overrides, -m, --cfg)"),
    "evaluate": Command("medtune.commands.evaluate", "score a trained run, a base model or an API model on medical QA"),
    "generate-data": Command("medtune.commands.generate_data", "QA records from medical text through an OpenAI API"),
    "report": Command("medtune.report.command", "the comparison report of run dirs or multirun dirs"),
    "status": Command("medtune.sweep", "each cell's state in a sweep dir (finished, failed, ...)", ("status",)),
    "export": Command("medtune.export.command", "a finished run as a standalone HF model folder (adapter merged)"),
}
HYDRA_COMMANDS = ("train", "evaluate", "generate-data")
SHELL_COMPLETION = ("--shell-completion", "-sc")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "usage: medtune <command> [arguments]   (medtune <command> --help)\n\ncommands:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run `medtune <command> ...`: the command's own main() sees the rest of the line as its script would."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        fail(f"unknown command {name!r}; one of: {', '.join(COMMANDS)}")
    if any(arg in SHELL_COMPLETION or arg.startswith("--shell-completion=") for arg in rest):
        fail("shell completion is not offered: Hydra's completion cannot see medtune's subcommands")
    if name in HYDRA_COMMANDS:
        rest = _with_user_conf(rest)
    command = COMMANDS[name]
    sys.argv = [f"medtune {name}", *command.leading, *rest]
    result = importlib.import_module(command.module).main()
    if type(result) is int:  # an exit status (medtune.sweep); a Hydra main returns its objective instead
        sys.exit(result)


def _with_user_conf(args: list[str]) -> list[str]:
    """A ./conf in the working directory joins the search path (beside the shipped groups) unless one is given."""
    given = any(arg in ("--config-dir", "-cd") or arg.startswith("--config-dir=") for arg in args)
    if given or not Path("conf").is_dir() or Path("conf").resolve() == _shipped_conf():
        return args
    return ["--config-dir", str(Path("conf").resolve()), *args]


def _shipped_conf() -> Path:
    from medtune.config import CONF_DIR

    return CONF_DIR.resolve()
