"""Typed schema of evaluate.py's config, registered in Hydra's ConfigStore as `evaluate_schema`.

Torch-free (as is everything it imports), so evaluate.py shows a config mistake before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from omegaconf import MISSING, DictConfig

from medtune.api_client import TEMPERATURE, ApiConfig, RetryConfig
from medtune.config import (
    AdapterConfig,
    AdapterMethod,
    BaseModelConfig,
    BitsAndBytesQuantConfig,
    EvalConfig,
    LoraAdapterConfig,
    QuantizationConfig,
    WandbConfig,
    check_eval,
    register_resolvers,
    store_once,
    to_typed,
)
from medtune.errors import ConfigError
from medtune.ranges import UNIT, ranged
from medtune.tiny_paths import MODEL_CONFIG_FILE, TINY_MARKER, check_tiny_model_path


class Backend(StrEnum):
    local = "local"  # transformers
    openai = "openai"  # any OpenAI-compatible API


@dataclass
class OpenAIConfig(ApiConfig):
    """The server and model (fields shared with generate_data.py in medtune.api_client.ApiConfig) and sampling."""

    model: str = "gpt-4o"
    # a one-line answer: a request still failing after 2 minutes fails (a hung server stops the run then)
    retry: RetryConfig = field(default_factory=lambda: RetryConfig(budget_s=120.0))
    temperature: float | None = ranged(0.0, TEMPERATURE)  # greedy answers; null for a reasoning model
    # A share of questions failed after their retries above this fails the run, with no score recorded.
    max_failed_share: float = ranged(0.0, UNIT)


@dataclass
class EvaluateConfig:
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    # composed with the lora fields (an adapter group may set them), kept as they apply (config.applicable)
    adapter: AdapterConfig = field(default_factory=lambda: LoraAdapterConfig(method=AdapterMethod.none))
    quantization: QuantizationConfig = field(default_factory=BitsAndBytesQuantConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    backend: Backend = Backend.local
    run_dir: str | None = None  # a finished train.py run: its base model + adapter are evaluated
    resume: str | None = None  # a previous evaluate.py run dir: continue there (API answers are reused)
    cache_dir: str = MISSING  # where offline tiny models are built
    progress: bool = True  # backend=openai: a progress bar (rate, ETA, failures) on stderr


def register_configs() -> None:
    """Register the evaluate.py schema; conf/evaluate.yaml names it first in its defaults list."""
    register_resolvers()
    store_once("evaluate_schema", EvaluateConfig)


def validate(cfg: EvaluateConfig) -> None:
    """Reject configs that cannot run, before any weights load or any API call."""
    if cfg.backend == Backend.local and cfg.run_dir is None and cfg.adapter.method != AdapterMethod.none:
        raise ConfigError(
            f"adapter={cfg.adapter.method} has no trained weights to evaluate: pass run_dir=<a train.py run dir> "
            "for a tuned model, or adapter=none for the untuned base."
        )
    if cfg.backend == Backend.local and cfg.run_dir is None:
        check_tiny_model_path(as_model_folder(cfg.base_model), cfg.cache_dir)
    check_eval(cfg.eval)
    if cfg.eval.shots < 0 or cfg.eval.batch_size < 1:
        raise ConfigError("eval.shots must be >= 0 and eval.batch_size >= 1.")


def as_model_folder(base: BaseModelConfig) -> BaseModelConfig:
    """`evaluate.py base_model.path=<folder>`: a saved model medtune did not build there (a `medtune export`, a
    published model downloaded with `hf download`) is scored as it is, named after its folder in W&B and in the
    report; the default base's tiny build never applies to it. `base_model.tiny=false base_model.name=<label>`
    names it otherwise."""
    path = Path(base.path).expanduser()
    if not base.tiny or not (path / MODEL_CONFIG_FILE).is_file() or (path / TINY_MARKER).is_file():
        return base
    return replace(base, tiny=False, name=path.resolve().name)


def to_evaluate_config(cfg: DictConfig | EvaluateConfig) -> EvaluateConfig:
    typed = to_typed(cfg, EvaluateConfig, validate)
    if typed.run_dir is None:
        typed.base_model = as_model_folder(typed.base_model)
    return typed
