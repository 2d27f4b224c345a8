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
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import openai
from omegaconf import MISSING
from tqdm import tqdm

from medtune.errors import ConfigError, DataError, MedtuneError

PLACEHOLDER_KEY = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key; the client needs one
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
OPENAI_URL = "https://api.openai.com/v1"


# --------------------------------------------------------------------------------------------- config
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


# ------------------------------------------------------------------------------------------ the log
class RequestLog:
    """The append-only attempt log (one JSON line per attempt, success or not): what was paid for.

    A kill can only cut its last line: that partial line is ignored on reading and cut off before the
    first append, so the next entry never glues onto it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._complete_bytes = 0
        self.entries = self._load()
        self._handle: TextIO | None = None

    def _load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        self._complete_bytes = data.rfind(b"\n") + 1
        entries = []
        for number, line in enumerate(data[: self._complete_bytes].decode("utf-8").split("\n"), start=1):
            if line.strip():  # not splitlines: a JSON string may hold a raw U+2028
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"malformed JSON ({err.msg})", path=self.path, line=number) from err
        return entries

    def answered(self) -> dict[str, dict[str, Any]]:
        """Request key → its first successful entry."""
        found: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            if entry["status"] == "ok":
                found.setdefault(entry["key"], entry)
        return found

    def errors(self) -> dict[str, str]:
        """Request key → the error of its last failed attempt (keys answered since are left out)."""
        answered = self.answered()
        return {e["key"]: e["error"] for e in self.entries if e["status"] != "ok" and e["key"] not in answered}

    def append(self, entry: dict[str, Any]) -> None:
        """Flushed at once: a kill -9 right after loses nothing that was paid for."""
        if self._handle is None:
            if self.path.exists():
                os.truncate(self.path, self._complete_bytes)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.entries.append(entry)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# --------------------------------------------------------------------------------------- the policy
class ApiStopped(MedtuneError):
    """The server cannot serve this run (nothing answers, key refused, unknown model, no quota)."""


class ApiFailed(MedtuneError):
    """The run's requests failed: its output would not mean what it says (a score, a dataset)."""


@dataclass(frozen=True)
class Failure:
    kind: str  # retry (try again) | connect (try again, counts toward stopping) | refused (item fails) | stop
    # logged as: ok | retry | refused (the server refused this item) | gave_up (retries spent) | stopped
    message: str
    http_status: int | None = None
    retry_after: float | None = None


class MalformedReply(ValueError):
    """A 200 reply without an answer (no choices, no content)."""


def classify(err: Exception, secret: str) -> Failure:
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
        cause = err.__cause__
        timed_out = isinstance(err, openai.APITimeoutError) and not isinstance(cause, httpx.ConnectTimeout)
        detail = f"{type(cause).__name__}: {cause}" if cause and not timed_out else message
        return Failure("retry" if timed_out else "connect", redact(detail, secret))
    if isinstance(err, openai.APIResponseValidationError | ValueError):  # non-JSON body, JSON without choices
        return Failure("retry", message)
    raise err


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


# ------------------------------------------------------------------------------------- rate limits
class TokenBucket:
    """Refills at `per_minute`/60 units per second, holding at most one second's worth.

    A take larger than that waits for a full bucket and overdraws it: it goes through instead of
    blocking forever, and later takes wait off the debt, so the average rate still holds.
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0  # units per second
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: float) -> None:
        async with self._lock:
            self._refill()
            needed = min(amount, self.capacity)
            while self.level < needed:
                await asyncio.sleep((needed - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now


class RateLimiter:
    """Client-side request and token limits (0: none), so a long run stays under the account's quota."""

    def __init__(self, requests_per_minute: float, tokens_per_minute: float) -> None:
        self.requests = TokenBucket(requests_per_minute) if requests_per_minute > 0 else None
        self.tokens = TokenBucket(tokens_per_minute) if tokens_per_minute > 0 else None

    async def acquire(self, tokens: float) -> None:
        if self.requests is not None:
            await self.requests.take(1)
        if self.tokens is not None:
            await self.tokens.take(tokens)


# ------------------------------------------------------------------------------------------ the calls
@dataclass(frozen=True)
class Request:
    key: str  # request_key(body)
    item: str  # what it is for (question id, chunk id): named in the log and in messages
    body: dict[str, Any]  # keyword arguments of chat.completions.create
    tokens: float = 0.0  # estimated prompt + reply tokens, for tokens_per_minute


@dataclass
class Summary:
    done: int = 0  # answered in this run
    failed: int = 0  # failed after their retries in this run (asked again by the next run)
    resumed: int = 0  # answered by an earlier run: not paid for again
    seconds: float = 0.0

    def line(self, label: str) -> str:
        return (
            f"{label}: {self.done} done, {self.failed} failed, {self.resumed} resumed from earlier runs "
            f"({self.seconds:.1f} s)"
        )


@dataclass
class _Run:
    """One call_all's shared state: the client, the log and the run-wide failure streaks."""

    client: openai.AsyncOpenAI
    cfg: ApiConfig
    secret: str
    log: RequestLog
    on_entry: Callable[[dict[str, Any]], None]
    limiter: RateLimiter
    summary: Summary
    connect_streak: int = 0
    failure_streak: int = 0

    async def complete(self, request: Request) -> Failure | None:
        """None once a reply is logged; the last Failure when the item failed; raises ApiStopped."""
        retry = self.cfg.retry
        deadline = time.monotonic() + retry.budget_s
        for attempt in range(1, retry.max_attempts + 1):
            await self.limiter.acquire(request.tokens)
            started = time.monotonic()
            timeout = max(min(self.cfg.timeout_s, deadline - started), 0.01)
            try:
                reply = await self.client.chat.completions.create(**request.body, timeout=timeout)
                entry = _ok_entry(request, attempt, reply, time.monotonic() - started)
            except Exception as err:
                failure = classify(err, self.secret)
            else:
                self._write(entry)
                self.connect_streak = self.failure_streak = 0
                return None
            wait = backoff_seconds(failure, attempt, retry)
            self.connect_streak = self.connect_streak + 1 if failure.kind == "connect" else 0
            if failure.kind == "stop" or self.connect_streak >= retry.connect_failures_to_stop:
                self._write(_error_entry(request, attempt, failure, "stopped", time.monotonic() - started))
                raise ApiStopped(await self._stop_message(failure))
            final = attempt == retry.max_attempts or time.monotonic() + wait >= deadline
            status = "refused" if failure.kind == "refused" else "gave_up" if final else "retry"
            self._write(_error_entry(request, attempt, failure, status, time.monotonic() - started))
            if status != "retry":
                return failure
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt is final")

    def _write(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        self.on_entry(entry)

    def count_failed_item(self, failure: Failure) -> None:
        """A refused item (context length, 400) says nothing about the server; a run of given-up ones does."""
        self.summary.failed += 1
        if failure.kind == "refused":
            return
        self.failure_streak += 1
        if self.failure_streak >= self.cfg.retry.failures_to_stop:
            raise ApiStopped(
                f"the last {self.failure_streak} requests to {address(self.cfg)} all failed after their retries "
                f"(last: {failure.message})"
            )

    async def _stop_message(self, failure: Failure) -> str:
        where, env, model = address(self.cfg), self.cfg.api_key_env, self.cfg.model
        if failure.kind == "connect":
            return f"nothing answers at {where} — is the server running? ({failure.message})"
        if failure.http_status in (401, 403):
            if self.secret == PLACEHOLDER_KEY:
                return f"{where} wants an API key and ${env} is not set ({failure.message})"
            if failure.http_status == 403:
                return f"{where} gives the key in ${env} no access to model {model!r} ({failure.message})"
            return f"{where} refused the key in ${env} ({failure.message})"
        if failure.http_status == 404:
            return f"{where} does not serve model {model!r} ({failure.message}); {await self._served_models()}"
        return f"the account behind ${env} has no quota left at {where} ({failure.message})"

    async def _served_models(self) -> str:
        try:
            models = [m.id async for m in self.client.models.list(timeout=min(self.cfg.timeout_s, 10.0))]
        except Exception as err:
            return f"its model list did not answer either ({type(err).__name__}): is base_url right?"
        return f"it serves: {', '.join(models)}" if models else "it lists no models"


def _ok_entry(request: Request, attempt: int, reply: Any, seconds: float) -> dict[str, Any]:
    """The logged reply; a 200 without choices or content raises MalformedReply (retried like a 5xx)."""
    if not getattr(reply, "choices", None):
        raise MalformedReply("the reply has no choices")
    choice = reply.choices[0]
    if not (choice.message.content or "").strip():
        raise MalformedReply(f"the reply is empty (finish_reason {choice.finish_reason})")
    usage = reply.usage
    return {
        "key": request.key,
        "item": request.item,
        "attempt": attempt,
        "status": "ok",
        "model": reply.model,
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        if usage
        else None,
        "seconds": round(seconds, 3),
        "time": time.time(),
    }


def _error_entry(request: Request, attempt: int, failure: Failure, status: str, seconds: float) -> dict[str, Any]:
    reason = f"context length exceeded: {failure.message}" if is_context_length(failure) else failure.message
    return {
        "key": request.key,
        "item": request.item,
        "attempt": attempt,
        "status": status,
        "http_status": failure.http_status,
        "error": reason,
        "retry_after": failure.retry_after,
        "seconds": round(seconds, 3),
        "time": time.time(),
    }


def call_all(
    cfg: ApiConfig,
    requests: Sequence[Request],
    log: RequestLog,
    *,
    label: str = "requests",
    unit: str = "request",
    progress: bool = True,
    on_entry: Callable[[dict[str, Any]], None] | None = None,
    postfix: Callable[[], str] | None = None,
) -> Summary:
    """Send every request without a logged reply (identical requests once); returns what happened.

    `on_entry` sees every logged attempt (W&B figures); `postfix` adds text to the progress bar (tokens,
    cost). Raises ApiStopped when the server cannot serve the run; everything logged before is kept.
    """
    answered = log.answered()
    unique = list({r.key: r for r in requests}.values())
    pending = [r for r in unique if r.key not in answered]
    summary = Summary(resumed=len(unique) - len(pending))
    if not pending:
        print(summary.line(label), file=sys.stderr)
        return summary
    secret = api_key(cfg)
    bar = tqdm(total=len(pending), desc=label, unit=unit, disable=not progress, dynamic_ncols=True, file=sys.stderr)
    started = time.perf_counter()
    try:
        asyncio.run(_call_pending(cfg, pending, log, secret, summary, bar, on_entry, postfix))
    except ApiStopped as stopped:
        kept = len(log.answered())
        kept_line = f" {kept} answers are kept in {log.path}; rerun the same command to continue." if kept else ""
        raise ApiStopped(f"{stopped}.{kept_line}") from None
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - started
        print(summary.line(label), file=sys.stderr)
    return summary


async def _call_pending(
    cfg: ApiConfig,
    pending: list[Request],
    log: RequestLog,
    secret: str,
    summary: Summary,
    bar: tqdm,
    on_entry: Callable[[dict[str, Any]], None] | None,
    postfix: Callable[[], str] | None,
) -> None:
    """The first request alone (preflight), then `concurrency` workers on one queue; a stop cancels all."""
    client = openai.AsyncOpenAI(api_key=secret, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s)
    limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
    state = _Run(client, cfg, secret, log, on_entry or (lambda entry: None), limiter, summary)

    async def settle(request: Request) -> Failure | None:
        failure = await state.complete(request)
        if failure is None:
            summary.done += 1
        else:
            state.count_failed_item(failure)
        bar.set_postfix_str(f"failed={summary.failed}" + (f" {postfix()}" if postfix else ""), refresh=False)
        bar.update(1)
        return failure

    async with client:
        first = await settle(pending[0])
        if first is not None and first.kind != "refused":
            raise ApiStopped(
                f"the first request to {address(cfg)} failed after its retries ({first.message}); nothing else was sent"
            )
        queue = iter(pending[1:])

        async def worker() -> None:
            for request in queue:  # one event loop thread: the shared iterator needs no lock
                await settle(request)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(cfg.concurrency, len(pending) - 1)):
                    group.create_task(worker())
        except* ApiStopped as stopped:
            raise stopped.exceptions[0] from None
