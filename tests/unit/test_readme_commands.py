"""Every `train.py` / `evaluate.py` / `generate_data.py` line of the README composes and validates (no weights, no
calls); the main ones also run verbatim, as subprocesses, in integration/test_readme.py."""

from __future__ import annotations

import re
import shlex

import pytest

from helpers import REPO

SCRIPTS = {"train.py": "train", "evaluate.py": "evaluate", "generate_data.py": "generate_data"}
COMMAND = re.compile(r"^(?:accelerate launch .*?)?python (train\.py|evaluate\.py|generate_data\.py)\b(.*)$")


def readme_commands() -> list[tuple[str, list[str]]]:
    """(script, overrides) of every entry-script line in the README's shell blocks, placeholders filled in."""
    commands, fenced, shell = [], False, False
    text = (REPO / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")  # shell line continuations
    for line in text.splitlines():
        if line.startswith("```"):
            fenced, shell = not fenced, not fenced and line.strip() in ("```bash", "```")
            continue
        match = COMMAND.match(line.strip()) if shell else None
        if match:
            args = shlex.split(re.sub(r"<[^>]+>", "placeholder", match.group(2).split(" #")[0]))
            commands.append((match.group(1), [a for arg in args if (a := _fill(arg))]))
    return commands


def _fill(arg: str) -> str | None:
    """Placeholders a reader replaces (`<run dir>`, `...`, `[...]`) become concrete values; `-m` is a launch flag;
    a search expression composes as one value of its space (medtune.search.space)."""
    if arg in ("-m", "--multirun", "...", "<overrides>"):
        return None
    arg = re.sub(r"(?<==)\.\.\.$", "placeholder", arg).replace("[...]", "[placeholder.txt]")
    key, sep, value = arg.partition("=")
    if sep and re.match(r"(choice|range|interval|tag)\(", value):  # a searched key: one value of its space
        from medtune.search.space import parse_space

        space = parse_space([arg])
        return space.overrides(space.example())[0]
    if sep and "," in value and not value.startswith("["):  # a sweep `a,b`: compose its first value
        value = value.split(",")[0]
    return f"{key}{sep}{value}"


def test_the_readme_names_every_entry_script():
    scripts = {script for script, _ in readme_commands()}
    assert scripts == set(SCRIPTS), scripts


@pytest.mark.parametrize(
    ("script", "overrides"), readme_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_every_readme_command_composes_and_validates(script, overrides, compose_config):
    """Each documented command yields a config that passes its script's checks (no weights, no calls)."""
    from medtune.config import to_train_config
    from medtune.datagen.config import to_generate_config
    from medtune.evaluation.config import to_evaluate_config

    check = {"train": to_train_config, "evaluate": to_evaluate_config, "generate_data": to_generate_config}
    name = SCRIPTS[script]
    check[name](compose_config(name, *overrides))


def test_the_readme_lists_the_report_csv_columns_as_written():
    from medtune.report.cells import CSV_COLUMNS

    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"`report\.csv`: the same figures, one row per cell, (\d+) columns: `([^`]+)`", text)
    assert match, "README: the report.csv line"
    listed = [name.strip() for name in match.group(2).split(",")]
    assert listed == CSV_COLUMNS and int(match.group(1)) == len(CSV_COLUMNS)
