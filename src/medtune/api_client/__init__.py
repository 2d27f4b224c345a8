"""One OpenAI-compatible client for every API call: evaluate.py (backend=openai) and generate_data.py.

`call_all(cfg, requests, log)` sends each request not yet answered in the append-only request log and
returns a `Summary` (done / failed / resumed). It owns, once for both scripts:
- the client: the official `openai` async client with its own retries off (`max_retries=0`): it retries
  `insufficient_quota` like any 429, and its retries would be invisible to the log;
- the key: read from the variable `api_key_env` names; a server on this machine gets a placeholder when
  the variable is unset. The key is never in a message, a log line or a file;
- the policy (`classify`): 429 waits Retry-After (capped) or backs off; 5xx, timeouts and malformed
  replies back off within the request's budget, then the item fails; refused connections, DNS and TLS
  errors stop the run after a few in a row; 401/403, 404 (listing the server's models) and
  `insufficient_quota` stop at once; a context-length (or other 400) refusal fails that item only;
- a preflight: the first request goes alone, so a wrong address, key or model fails in seconds;
- the log and resume: one line per attempt, a torn last line dropped, the resume key a hash of the whole
  request body, so a rerun never pays for an answer it has;
- concurrency, request/token rate limits, a tqdm progress bar and a final one-line summary.

Modules: config (ApiConfig, the key, the request body and its resume key) · request_log (the attempt log) ·
policy (failure classification and backoff) · rate_limit (request/token buckets) · runner (`call_all`, the bar).
"""

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
