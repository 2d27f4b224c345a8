"""One OpenAI-compatible client for every API call: evaluate.py (backend=openai) and generate_data.py.

`call_all(cfg, requests, log)` sends each request not yet answered in the append-only request log and
returns a `Summary` (done / failed / resumed). It owns, once for both scripts:
- the client: the official `openai` async client with its own retries off (`max_retries=0`): it retries
  `insufficient_quota` like any 429, and its retries would be invisible to the log;
- the key: read from the variable `api_key_env` names; a server on this machine gets a placeholder when
  the variable is unset. The key is never in a message, a log line or a file;
- the policy (`classify`): 429 waits Retry-After (capped) or backs off; 5xx, timeouts, connections the
  server closed mid-reply and malformed replies back off within the request's budget, then the item fails;
  no connection at all (refused, DNS, TLS, connect timeout) stops the run after a few in a row; 401/403,
  404 (listing the server's models) and `insufficient_quota` stop at once; a context-length (or other 400)
  refusal fails that item only;
- a preflight: the first request goes alone, so a wrong address, key or model fails in seconds;
- the log and resume: one line per attempt, a torn last line dropped, the resume key a hash of the whole
  request body, so a rerun never pays for an answer it has;
- concurrency, request/token rate limits, a tqdm progress bar that names a request waiting longer than
  `slow_request_s`, and a final one-line summary;
- the request body (`chat_body`): set sampling parameters only, the token limit under the server's name.

Modules: config (ApiConfig, the key, the request body and its resume key) · request_log (the attempt log) ·
policy (failure classification and backoff) · rate_limit (request/token buckets) · runner (`call_all`, the bar).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtune.api_client.config import (
        LOCAL_HOSTS,
        OPENAI_URL,
        PLACEHOLDER_KEY,
        TEMPERATURE,
        TOP_P,
        ApiConfig,
        RetryConfig,
        address,
        api_key,
        chat_body,
        redact,
        request_key,
        token_limit_name,
    )
    from medtune.api_client.policy import (
        ApiFailed,
        ApiStopped,
        Failure,
        MalformedReply,
        backoff_seconds,
        classify,
        is_context_length,
        retry_after_seconds,
    )
    from medtune.api_client.rate_limit import RateLimiter, TokenBucket
    from medtune.api_client.request_log import RequestLog
    from medtune.api_client.runner import Request, Summary, call_all, error_entry, ok_entry

# Each name's module, imported on first use: the schemas (evaluation/datagen config) need only `config`, and a
# local-model run never loads `openai` (~0.8 s at every start) that only policy and runner need.
_HOMES = {
    "config": (
        "LOCAL_HOSTS", "OPENAI_URL", "PLACEHOLDER_KEY", "TEMPERATURE", "TOP_P", "ApiConfig", "RetryConfig", "address",
        "api_key", "chat_body", "redact", "request_key", "token_limit_name",
    ),
    "policy": (
        "ApiFailed", "ApiStopped", "Failure", "MalformedReply", "backoff_seconds", "classify", "is_context_length",
        "retry_after_seconds",
    ),
    "rate_limit": ("RateLimiter", "TokenBucket"),
    "request_log": ("RequestLog",),
    "runner": ("Request", "Summary", "call_all", "error_entry", "ok_entry"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """PEP 562: `from medtune.api_client import X` imports X's module only then."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


__all__ = [
    "LOCAL_HOSTS",
    "OPENAI_URL",
    "PLACEHOLDER_KEY",
    "TEMPERATURE",
    "TOP_P",
    "ApiConfig",
    "ApiFailed",
    "ApiStopped",
    "Failure",
    "MalformedReply",
    "RateLimiter",
    "Request",
    "RequestLog",
    "RetryConfig",
    "Summary",
    "TokenBucket",
    "address",
    "api_key",
    "backoff_seconds",
    "call_all",
    "chat_body",
    "classify",
    "error_entry",
    "is_context_length",
    "ok_entry",
    "redact",
    "request_key",
    "retry_after_seconds",
    "token_limit_name",
]
