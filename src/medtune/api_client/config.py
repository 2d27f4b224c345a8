"""What both scripts configure to reach an OpenAI-compatible server, and the facts derived from it: the address,
the key (never in a message, a log line or a file), the request body (`chat_body`) and its resume key."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omegaconf import MISSING

from medtune.enums import TokenLimitParam
from medtune.errors import ConfigError
from medtune.ranges import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Range, ranged

PLACEHOLDER_KEY = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key; the client needs one
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_HOST = "api.openai.com"
TEMPERATURE = Range(0, 2)  # the OpenAI API's range; a subclass changing the default declares it again
TOP_P = Range(0, 1, low_open=True)


@dataclass
class RetryConfig:
    # tries per request and run; a request still failing is asked again by the next run
    max_attempts: int = ranged(6, AT_LEAST_1)
    budget_s: float = ranged(300.0, POSITIVE)  # wall seconds one request may spend on tries and waits before it fails
    # 5xx / timeout / dropped connection / 429 without Retry-After: initial × 2^(try-1), ±25 % jitter
    backoff_initial_s: float = ranged(1.0, NON_NEGATIVE)
    backoff_max_s: float = ranged(60.0, NON_NEGATIVE)
    max_retry_after_s: float = ranged(60.0, NON_NEGATIVE)  # a longer Retry-After is capped to this
    # no connection (refused, DNS, TLS, connect timeout) this many times in a row, across the run, stops it
    connect_failures_to_stop: int = ranged(3, AT_LEAST_1)
    # requests in a row that failed after their retries (5xx, timeouts, dropped connections) stop the run
    failures_to_stop: int = ranged(10, AT_LEAST_1)


@dataclass
class ApiConfig:
    """What both scripts need to reach an OpenAI-compatible server (evaluate.py `openai.`, generate_data.py
    `generator.`). Ranges are checked at composition (medtune.ranges)."""

    model: str = MISSING
    base_url: str | None = None  # null: api.openai.com; any OpenAI-compatible server (vLLM, Ollama, llama.cpp)
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key (never the key itself)
    concurrency: int = ranged(8, AT_LEAST_1)  # requests in flight
    requests_per_minute: float = ranged(0.0, NON_NEGATIVE)  # 0: no client-side limit (the server's 429s still apply)
    tokens_per_minute: float = ranged(0.0, NON_NEGATIVE)  # 0: no limit; counts each request's estimated tokens
    # One HTTP attempt, the one home of this default for both scripts: a hung server times out within a minute
    # (then retried within retry.budget_s). A slow server writing long replies needs more (generator=local sets it).
    timeout_s: float = ranged(60.0, POSITIVE)
    # a request in flight this long shows in the progress bar (address, seconds waited)
    slow_request_s: float = ranged(10.0, POSITIVE)
    retry: RetryConfig = field(default_factory=RetryConfig)
    # Sampling (chat_body): null leaves a parameter out, so the server's default applies (reasoning models accept
    # only the default temperature: set it to null for them).
    temperature: float | None = ranged(None, TEMPERATURE)
    top_p: float | None = ranged(None, TOP_P)
    max_tokens: int | None = ranged(None, AT_LEAST_1)  # the reply's token limit, sent as token_limit_param
    token_limit_param: TokenLimitParam = TokenLimitParam.auto  # auto: max_completion_tokens at api.openai.com
    seed: int | None = None  # sent when set (best-effort determinism)


def address(cfg: ApiConfig) -> str:
    return (cfg.base_url or OPENAI_URL).rstrip("/")


def token_limit_name(cfg: ApiConfig) -> str:
    """max_completion_tokens for the OpenAI API (max_tokens is deprecated there), max_tokens for the servers that
    need it (vLLM, llama.cpp, Ollama), unless token_limit_param names one."""
    if cfg.token_limit_param != TokenLimitParam.auto:
        return str(cfg.token_limit_param)
    at_openai = urlsplit(address(cfg)).hostname == OPENAI_HOST
    return str(TokenLimitParam.max_completion_tokens if at_openai else TokenLimitParam.max_tokens)


def chat_body(cfg: ApiConfig, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions request both scripts send (and hash as its resume key): the parameters that are set,
    the token limit under the name this server wants."""
    optional = {"temperature": cfg.temperature, "top_p": cfg.top_p, token_limit_name(cfg): cfg.max_tokens}
    optional["seed"] = cfg.seed
    return {"model": cfg.model, "messages": messages} | {k: v for k, v in optional.items() if v is not None}


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
