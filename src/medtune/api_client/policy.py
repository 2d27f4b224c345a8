"""The failure policy: what an exception from the client means for the item and for the run (`classify`), and how
long to wait before the next try (`backoff_seconds`)."""

from __future__ import annotations

import email.utils
import random
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from medtune.api_client.config import RetryConfig, redact
from medtune.errors import MedtuneError


class ApiStopped(MedtuneError):
    """The server cannot serve this run (nothing answers, key refused, unknown model, no quota)."""


class ApiFailed(MedtuneError):
    """The run's requests failed: its output would not mean what it says (a score, a dataset)."""


# No connection was made (refused, DNS, TLS, connect timeout): nothing answers at the address. openai>=3 sends with
# httpx2 and wraps its error in APIConnectionError.__cause__.
NO_CONNECTION = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.UnsupportedProtocol,
    httpx2.ProxyError,
    ssl.SSLError,
)
DROPPED = "the server closed the connection before the reply was complete"  # any other transport error


@dataclass(frozen=True)
class Failure:
    kind: str  # retry (try again) | connect (try again, counts toward stopping) | refused (item fails) | stop
    # logged as: ok | retry | refused (the server refused this item) | gave_up (retries spent) | stopped
    message: str
    http_status: int | None = None
    retry_after: float | None = None
    dropped: bool = False  # the connection closed mid-reply: a server fault, retried (Summary counts them)


class MalformedReply(ValueError):
    """A 200 reply without an answer (no choices, no content)."""


def classify(err: Exception, secret: str, timeout_s: float | None = None) -> Failure:
    """What an exception from the client (or a reply check) means for this item and for the run."""
    message = redact(f"{type(err).__name__}: {err}", secret)
    if isinstance(err, openai.APIStatusError):
        status, code = err.status_code, str(err.code or err.type or "")
        if status in (401, 403, 404) or "insufficient_quota" in code:
            return Failure("stop", message, status)
        if status >= 500 or status in (408, 409, 429):  # overloaded or busy: waiting can help
            return Failure("retry", message, status, retry_after_seconds(err.response.headers))
        return Failure("refused", message, status)  # 400 (e.g. context length), 413, 422: this request cannot work
    if isinstance(err, openai.APIConnectionError):
        return _transport_failure(err, secret, timeout_s)
    if isinstance(err, openai.APIResponseValidationError | ValueError):  # non-JSON body, JSON without choices
        return Failure("retry", message)
    raise err


def _transport_failure(err: openai.APIConnectionError, secret: str, timeout_s: float | None) -> Failure:
    """Below HTTP: no connection (counts toward stopping the run), no reply in time, or a connection dropped
    mid-reply (both server faults: retried with the backoff, and a run of them stops the run as 5xx do)."""
    cause = err.__cause__
    detail = redact(f"{type(cause).__name__}: {cause}" if cause else f"{type(err).__name__}: {err}", secret)
    if isinstance(cause, NO_CONNECTION):
        return Failure("connect", detail)
    if isinstance(err, openai.APITimeoutError):
        within = f" within {timeout_s:g} s" if timeout_s else ""
        return Failure("retry", f"no reply{within} ({redact(f'{type(err).__name__}: {err}', secret)})")
    return Failure("retry", f"{DROPPED} ({detail})", dropped=True)


def is_context_length(failure: Failure) -> bool:
    return bool(re.search(r"context.?(length|size|window)|too many tokens", failure.message, re.IGNORECASE))


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds (number or HTTP date), preferring the non-standard retry-after-ms."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def backoff_seconds(failure: Failure, attempt: int, retry: RetryConfig) -> float:
    """Retry-After when the server gave one (capped), else initial × 2^(attempt-1) with ±25 % jitter."""
    if failure.retry_after is not None:
        return min(failure.retry_after, retry.max_retry_after_s)
    delay = min(retry.backoff_initial_s * 2 ** (attempt - 1), retry.backoff_max_s)
    return delay * random.uniform(0.75, 1.25)
