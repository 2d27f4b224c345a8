"""What both scripts configure to reach an OpenAI-compatible server, and the facts derived from it: the address,
the key (never in a message, a log line or a file), the resume key of a request."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omegaconf import MISSING

from medtune.errors import ConfigError

PLACEHOLDER_KEY = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key; the client needs one
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
OPENAI_URL = "https://api.openai.com/v1"


@dataclass
class RetryConfig:
    max_attempts: int = 6  # tries per request and run; a request still failing is asked again by the next run
    budget_s: float = 300.0  # wall seconds one request may spend on tries and waits before it fails
    backoff_initial_s: float = 1.0  # 5xx / timeout / 429 without Retry-After: initial × 2^(try-1), ±25 % jitter
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is capped to this
    connect_failures_to_stop: int = 3  # refused / DNS / TLS failures in a row, across the run, stop it
    failures_to_stop: int = 10  # requests in a row that failed after their retries stop the run


@dataclass
class ApiConfig:
    """What both scripts need to reach an OpenAI-compatible server (evaluate.py `openai.`, generate_data.py
    `generator.`)."""

    model: str = MISSING
    base_url: str | None = None  # null: api.openai.com; any OpenAI-compatible server (vLLM, Ollama, llama.cpp)
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key (never the key itself)
    concurrency: int = 8  # requests in flight
    requests_per_minute: float = 0.0  # 0: no client-side limit (the server's 429s still apply)
    tokens_per_minute: float = 0.0  # 0: no limit; counts each request's estimated tokens
    timeout_s: float = 60.0  # one HTTP attempt
    retry: RetryConfig = field(default_factory=RetryConfig)


def validate_api(cfg: ApiConfig, prefix: str) -> None:
    """Values that cannot work, named by their full config key (`prefix` is `openai` or `generator`)."""
    for key, value in (
        ("concurrency", cfg.concurrency),
        ("timeout_s", cfg.timeout_s),
        ("retry.max_attempts", cfg.retry.max_attempts),
        ("retry.budget_s", cfg.retry.budget_s),
        ("retry.connect_failures_to_stop", cfg.retry.connect_failures_to_stop),
        ("retry.failures_to_stop", cfg.retry.failures_to_stop),
    ):
        if value <= 0:
            raise ConfigError(f"{prefix}.{key} must be positive (got {value}).")


def address(cfg: ApiConfig) -> str:
    return (cfg.base_url or OPENAI_URL).rstrip("/")


def api_key(cfg: ApiConfig) -> str:
    """The key from $api_key_env; a placeholder for a self-hosted server; else a clear error."""
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    if cfg.base_url and urlsplit(cfg.base_url).hostname in LOCAL_HOSTS:
        return PLACEHOLDER_KEY
    raise ConfigError(f"set the API key in ${cfg.api_key_env} (api_key_env names another variable).")


def request_key(body: dict[str, Any]) -> str:
    """The resume key: a hash of the whole request (model, messages, sampling parameters)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret and secret != PLACEHOLDER_KEY else text
