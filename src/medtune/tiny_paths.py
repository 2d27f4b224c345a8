"""Where a tiny model may be built (only in medtune's cache, in a folder that is empty or that medtune made itself),
and whether an up-to-date build is already there.

Torch-free, so config validation (medtune.config, medtune.evaluation.config) checks it before torch is imported,
and an entry script whose tiny model is built imports torch only once it loads it; medtune.tiny builds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from medtune.errors import ConfigError

if TYPE_CHECKING:
    from medtune.config import BaseModelConfig

TINY_MARKER = "medtune_tiny.json"  # written into every tiny-model folder medtune builds: only those may be rebuilt
MODEL_CONFIG_FILE = "config.json"  # transformers' CONFIG_NAME: every saved model folder has one
# medtune.tiny's recipe: bump it when that recipe changes, so cached builds are rebuilt instead of silently reused.
RECIPE_VERSION = 2


def ensure_tiny_model(base: BaseModelConfig, cache_dir: str | Path) -> Path:
    """Build the tiny model at base.path unless an up-to-date build is already there (the entry scripts call this
    before loading: loading only loads). A real model's path is returned as it is. Torch is imported only to build,
    so a script with a bad questions file still fails in seconds."""
    path = Path(base.path).expanduser()
    if not base.tiny or is_current_build(path):
        return path
    from medtune.tiny import build_tiny_model

    return build_tiny_model(base, cache_dir)


def is_current_build(path: Path) -> bool:
    """A tiny model of the current recipe is at path (its marker says so)."""
    marker = path / TINY_MARKER
    return marker.exists() and json.loads(marker.read_text()).get("recipe_version") == RECIPE_VERSION


def tiny_build_may_replace(path: Path) -> bool:
    """A tiny model may be built only where nothing is, in an empty folder, or over an earlier build of medtune's."""
    if (path / TINY_MARKER).is_file() or not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())


def check_tiny_model_path(base: BaseModelConfig, cache_dir: str) -> None:
    """A tiny model is built only in medtune's cache, in a folder that is empty or that medtune made itself, so a
    path meant for a real model (`base_model.path=/data/my-model` on a tiny base) never gets overwritten or
    silently replaced by a toy."""
    if not base.tiny:
        return
    path = Path(base.path).expanduser()
    if (path / TINY_MARKER).is_file():
        return
    how = "load your own model with a base_model group of its architecture (e.g. base_model=opencalm_7b) and "
    how += f"base_model.path={base.path}, or set base_model.tiny=false"
    if not tiny_build_may_replace(path):
        raise ConfigError(
            f"base_model.path={base.path} holds files medtune did not create (no {TINY_MARKER}), and "
            f"base_model={base.name} would build a tiny model there; nothing was changed. To {how}."
        )
    cache = Path(cache_dir).expanduser().resolve()
    if not path.resolve().is_relative_to(cache):
        raise ConfigError(
            f"base_model.path={base.path} is not a tiny model, and base_model={base.name} builds tiny models only "
            f"inside cache_dir ({cache}); to {how}."
        )
