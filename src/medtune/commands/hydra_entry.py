"""@hydra.main on the shipped config groups (medtune.config.CONF_DIR), shared by the Hydra commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hydra

from medtune.config import CONF_DIR


def hydra_main(config_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """@hydra.main with an absolute config path, so the command runs from any directory; a user's `--config-dir`
    (or ./conf, see medtune.commands) adds groups beside the shipped ones."""
    return hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
