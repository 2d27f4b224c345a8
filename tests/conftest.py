"""Test environment: offline Hugging Face, offline W&B, no proxies, one tiny-model cache per session.

These variables are set before any Hugging Face or W&B import, and subprocess runs of the real scripts
inherit them (see `helpers.script_env`). Shared functions live in helpers.py, fixtures here.
"""

from __future__ import annotations

import gc
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from omegaconf import DictConfig

from helpers import compose, run_script

if TYPE_CHECKING:
    from medtune.config import BaseModelConfig
    from medtune.testing import OpenAIServer

# A fresh cache per session (CI builds the tiny models once, ~1 min); MEDTUNE_TEST_CACHE reuses one across sessions.
_SESSION_CACHE = Path(os.environ.get("MEDTUNE_TEST_CACHE") or tempfile.mkdtemp(prefix="medtune-test-cache-"))
os.environ["MEDTUNE_TEST_CACHE"] = str(_SESSION_CACHE)  # pytest-xdist's workers start after this: one cache for all

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
# torch's idle OpenMP threads sleep instead of spinning: on this 2-core machine next to one busy process, 20 tiny
# GPT-NeoX steps took 11.8 s spinning and 1.7 s sleeping; quiet, the README's 500-step `python train.py` takes 38 s
# spinning and 45 s sleeping. A quiet machine may keep spinning: OMP_WAIT_POLICY=ACTIVE python -m pytest.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "PYTEST_XDIST_WORKER" in os.environ:  # one torch thread per worker (and its scripts): 2 workers fill 2 cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by what a test needs, derived here so they cannot drift: the `tiny_models` fixture → `tiny_model`;
    a test under tests/integration (the real scripts as subprocesses) → `subprocess`, `integration` and `slow`; a
    unit test marked `subprocess` (it starts a program: the demo builder, ruff, chromium) → `integration` too;
    `gpu` without CUDA → skipped."""
    import torch

    integration = Path(__file__).parent / "integration"
    skip_gpu = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if {"tiny_models", "tiny_chat_models", "chat_tokenizer"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tiny_model)
        if item.path.is_relative_to(integration):
            item.add_marker(pytest.mark.subprocess)
            item.add_marker(pytest.mark.slow)
        if item.path.is_relative_to(integration) or "subprocess" in item.keywords:
            item.add_marker(pytest.mark.integration)
        if skip_gpu and "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """MEDTUNE_CACHE of this session: tiny models are built here once and shared by every test."""
    return _SESSION_CACHE


@pytest.fixture(scope="session")
def tiny_models(cache_dir: Path) -> dict[str, BaseModelConfig]:
    """Both tiny architectures as their conf/base_model files describe them, built once per session (every test then
    loads them with from_pretrained)."""
    from medtune.tiny import tiny_base_model

    names = ("tiny_gptneox", "tiny_llama")
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":  # the second worker builds the other model meanwhile
        names = names[::-1]
    return {name: tiny_base_model(name, cache_dir) for name in names}


@pytest.fixture(scope="session")
def tiny_chat_models(cache_dir: Path) -> dict[str, BaseModelConfig]:
    """tiny_qwen3 (the Qwen3 architecture with its chat format), built once per session by the tests that need a chat
    model. tiny_llama3 is tiny_llama's architecture: the suite tests its chat format from its tokenizer alone
    (`chat_tokenizer`), which saves building a third Llama."""
    from medtune.tiny import tiny_base_model

    return {"tiny_qwen3": tiny_base_model("tiny_qwen3", cache_dir)}


@pytest.fixture(scope="session")
def chat_tokenizer(tiny_chat_models, tmp_path_factory) -> Callable[[str], Any]:
    """`chat_tokenizer("tiny_qwen3" | "tiny_llama3")`: the tokenizer of a tiny chat base as from_pretrained loads it
    (tiny_llama3's trained, given its chat format and saved as its build does, without pretraining a model)."""
    from transformers import AutoTokenizer

    from medtune import demo_assets
    from medtune.tiny import train_tokenizer

    llama3 = tmp_path_factory.mktemp("tiny_llama3_tokenizer")
    train_tokenizer(demo_assets.corpus_path(), "llama3").save_pretrained(llama3)
    paths = {"tiny_qwen3": tiny_chat_models["tiny_qwen3"].path, "tiny_llama3": str(llama3)}
    return lambda name: AutoTokenizer.from_pretrained(paths[name])


@pytest.fixture
def compose_config(cache_dir: Path) -> Callable[..., DictConfig]:
    """`compose_config("train", "trainer.max_steps=2")`: the real primary config, composed in-process."""
    return lambda name, *overrides: compose(name, *overrides, cache_dir=cache_dir)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """generate_data's source in unit tests: 24 distinct sentences, 8 chunks of 3 lines (helpers.small_generate)."""
    from medtune.testing.qa_pairs import synthetic_corpus

    path = tmp_path / "corpus.txt"
    path.write_text(synthetic_corpus(24), encoding="utf-8")
    return path


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    """The loopback OpenAI-compatible server answering generation prompts like a well-behaved model."""
    from medtune.testing import OpenAIServer
    from medtune.testing.qa_pairs import qa_responder

    with OpenAIServer(qa_responder) as srv:
        yield srv


@pytest.fixture(scope="session")
def trained_run(tiny_models, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """(run dir, process) of one short `train.py` run (6 LoRA steps, 8 QA questions) from an empty folder, started
    once per session and shared by the tests that check a run or read one back (test_train_cli, test_evaluate_cli)."""
    cwd = tmp_path_factory.mktemp("trained")
    run_dir = cwd / "run"
    args = ["trainer.max_steps=6", "eval.limit=8", "trainer.logging_steps=2", "trainer.save_steps=1000"]
    return run_dir, run_script("train.py", *args, f"hydra.run.dir={run_dir}", cwd=cwd)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Collect what the last test left, then freeze the survivors out of the collector's view: a full collection
    (each `Trainer.train` runs one, through accelerate's `free_memory`) then scans only this test's objects instead
    of the ~600k of torch, transformers and the session fixtures, 0.4-0.7 s of CPU each time."""
    gc.collect()
    gc.freeze()
