"""Typed schema of evaluate.py's config, registered in Hydra's ConfigStore as `evaluate_schema`.

Torch-free (as is everything it imports), so evaluate.py shows a config mistake before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from medtune.api_client import ApiConfig, RetryConfig, validate_api
from medtune.config import (
    EVAL_MODES,
    EVAL_PROMPTS,
    AdapterConfig,
    BaseModelConfig,
    EvalConfig,
    QuantizationConfig,
    WandbConfig,
    check_tiny_model_path,
    check_wandb,
    register_resolvers,
    to_typed,
)
from medtune.errors import ConfigError
from medtune.qa_data import check_source

BACKENDS = ("local", "openai")


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
    adapter: AdapterConfig = field(default_factory=lambda: AdapterConfig(method="none"))
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    backend: str = "local"  # local (transformers) | openai (any OpenAI-compatible API)
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
    for value, allowed, key in (
        (cfg.backend, BACKENDS, "backend"),
        (cfg.eval.mode, EVAL_MODES, "eval.mode"),
        (cfg.eval.prompt, EVAL_PROMPTS, "eval.prompt"),
    ):
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}.")
    if cfg.backend == "local" and cfg.run_dir is None and cfg.adapter.method != "none":
        raise ConfigError(
            f"adapter={cfg.adapter.method} has no trained weights to evaluate: pass run_dir=<a train.py run dir> "
            "for a tuned model, or adapter=none for the untuned base."
        )
    if cfg.backend == "local" and cfg.run_dir is None:
        check_tiny_model_path(cfg.base_model, cfg.cache_dir)
    check_wandb(cfg.wandb)
    check_source(cfg.eval)
    if cfg.eval.shots < 0 or cfg.eval.batch_size < 1:
        raise ConfigError("eval.shots must be >= 0 and eval.batch_size >= 1.")
    if cfg.backend == "openai":
        validate_api(cfg.openai, "openai")
        if not 0.0 <= cfg.openai.max_failed_share <= 1.0:
            raise ConfigError(f"openai.max_failed_share must be in [0, 1] (got {cfg.openai.max_failed_share}).")


def to_evaluate_config(cfg: DictConfig | EvaluateConfig) -> EvaluateConfig:
    return to_typed(cfg, EvaluateConfig, validate)
