"""Typed schema of evaluate.py's config, registered in Hydra's ConfigStore as `evaluate_schema`.

Torch-free (as is everything it imports), so evaluate.py shows a config mistake before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from medtune.api_client import ApiConfig, RetryConfig, validate_api
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
    to_typed,
)
from medtune.errors import ConfigError
from medtune.tiny_paths import check_tiny_model_path


class Backend(StrEnum):
    local = "local"  # transformers
    openai = "openai"  # any OpenAI-compatible API


@dataclass
class OpenAIConfig(ApiConfig):
    """The server and model (fields shared with generate_data.py in medtune.api_client.ApiConfig) and sampling."""

    model: str = "gpt-4o"
    # a one-line answer: a request still failing after 2 minutes fails (a hung server stops the run then)
    retry: RetryConfig = field(default_factory=lambda: RetryConfig(budget_s=120.0))
    temperature: float = 0.0
    max_tokens: int | None = None  # None: the server's default
    # A share of questions failed after their retries above this fails the run, with no score recorded.
    max_failed_share: float = 0.0


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
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def validate(cfg: EvaluateConfig) -> None:
    """Reject configs that cannot run, before any weights load or any API call."""
    if cfg.backend == "local" and cfg.run_dir is None and cfg.adapter.method != "none":
        raise ConfigError(
            f"adapter={cfg.adapter.method} has no trained weights to evaluate: pass run_dir=<a train.py run dir> "
            "for a tuned model, or adapter=none for the untuned base."
        )
    if cfg.backend == "local" and cfg.run_dir is None:
        check_tiny_model_path(cfg.base_model, cfg.cache_dir)
    check_eval(cfg.eval)
    if cfg.eval.shots < 0 or cfg.eval.batch_size < 1:
        raise ConfigError("eval.shots must be >= 0 and eval.batch_size >= 1.")
    if cfg.backend == "openai":
        validate_api(cfg.openai, "openai")
        if not 0.0 <= cfg.openai.max_failed_share <= 1.0:
            raise ConfigError(f"openai.max_failed_share must be in [0, 1] (got {cfg.openai.max_failed_share}).")


def to_evaluate_config(cfg: DictConfig | EvaluateConfig) -> EvaluateConfig:
    return to_typed(cfg, EvaluateConfig, validate)
