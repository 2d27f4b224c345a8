"""@hydra.main on the shipped config groups (medtune.config.CONF_DIR), shared by the Hydra commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import hydra

from medtune.config import CONF_DIR


def hydra_main(config_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """@hydra.main with an absolute config path, so the command runs from any directory; a user's `--config-dir`
    (or ./conf, see medtune.commands) adds groups beside the shipped ones. An override that does not parse fails
    on one line first (Hydra's own report of it is several, with a hint about HYDRA_FULL_ERROR)."""
    decorate = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)

    def wrap(task: Callable[..., Any]) -> Callable[..., Any]:
        main = decorate(task)

        @functools.wraps(task)
        def checked(*args: Any, **kwargs: Any) -> Any:
            check_overrides_parse(sys.argv[1:])
            return main(*args, **kwargs)

        return checked

    return wrap


def check_overrides_parse(argv: list[str]) -> None:
    """Every override on the command line parses in Hydra's grammar, or one line names the one that does not."""
    from hydra._internal.utils import get_args_parser

    from medtune.cli import exit_on_user_error, parse_override

    known, rest = get_args_parser().parse_known_args(argv)
    with exit_on_user_error():
        for argument in [*known.overrides, *(arg for arg in rest if not arg.startswith("-"))]:
            parse_override(argument)
