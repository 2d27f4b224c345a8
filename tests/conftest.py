"""Test environment: offline Hugging Face, offline W&B, no proxies, one tiny-model cache per session.

These variables are set before any Hugging Face or W&B import, and subprocess runs of the real scripts
inherit them (see `script_env`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A fresh cache per session (CI builds the tiny models once, ~1 min); MEDTUNE_TEST_CACHE reuses one across sessions.
_SESSION_CACHE = Path(os.environ.get("MEDTUNE_TEST_CACHE") or tempfile.mkdtemp(prefix="medtune-test-cache-"))

os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TOKENIZERS_PARALLELISM": "false",
        "MEDTUNE_CACHE": str(_SESSION_CACHE),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
)
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """MEDTUNE_CACHE of this session: tiny models are built here once and shared by every test."""
    return _SESSION_CACHE


@pytest.fixture(scope="session")
def tiny_models(cache_dir: Path) -> dict[str, Path]:
    """Both tiny architectures, built once per session and then loaded with from_pretrained."""
    from medtune.tiny import tiny_base_model

    paths = {name: Path(tiny_base_model(name, cache_dir).path) for name in ("tiny_gptneox", "tiny_llama")}
    return paths


@pytest.fixture
def compose_config(cache_dir: Path) -> Callable[..., object]:
    """Compose a primary config (train | evaluate | generate_data) in-process with overrides (Hydra's compose API)."""
    from hydra import compose, initialize_config_dir

    from medtune.config import register_configs
    from medtune.datagen.config import register_configs as register_generate
    from medtune.evaluation.config import register_configs as register_evaluate

    for register in (register_configs, register_evaluate, register_generate):
        register()

    def _compose(name: str, *overrides: str):
        cache = [] if name == "generate_data" else [f"cache_dir={cache_dir}"]
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose(config_name=name, overrides=[*cache, *overrides])

    return _compose


@pytest.fixture
def compose_train(compose_config: Callable[..., object]) -> Callable[..., object]:
    """Compose the real train config in-process with overrides."""
    return lambda *overrides: compose_config("train", *overrides)


def script_env() -> dict[str, str]:
    """Environment for subprocess runs of the entry scripts (inherits the offline settings above).

    Without WANDB_SERVICE, as in a user's shell: the suite's own in-process W&B runs set it, and a script attached to
    that shared service and then killed would hold its run id there for the rest of the session (resume fails)."""
    return {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}


def run_script(script: str, *overrides: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an entry script from a temp cwd (so nothing lands in the repo) and capture its output."""
    return _run([str(REPO / script), *overrides], cwd, timeout)


def run_module(module: str, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m module args...` from a temp cwd, with the test environment."""
    return _run(["-m", module, *args], cwd, timeout)


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
