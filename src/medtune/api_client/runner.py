"""The request runner: `call_all` sends each request not yet answered in the log, a preflight first, then
`concurrency` workers, with the policy, the rate limits, a progress bar and a one-line summary."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from tqdm import tqdm

from medtune.api_client.config import PLACEHOLDER_KEY, ApiConfig, address, api_key
from medtune.api_client.policy import ApiStopped, Failure, MalformedReply, backoff_seconds, classify, is_context_length
from medtune.api_client.rate_limit import RateLimiter
from medtune.api_client.request_log import RequestLog

HEARTBEAT_S = 5.0  # the bar's wait figure refreshes this often: a slow request shows by slow_request_s + 5 s


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
    dropped: int = 0  # attempts whose connection the server closed mid-reply (each retried)
    seconds: float = 0.0

    def line(self, label: str) -> str:
        dropped = f", {self.dropped} connections closed by the server mid-reply (retried)" if self.dropped else ""
        return (
            f"{label}: {self.done} done, {self.failed} failed, {self.resumed} resumed from earlier runs{dropped} "
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
    in_flight: dict[int, float] = field(default_factory=dict)  # attempt number in this run → its monotonic start
    attempts_sent: int = 0

    def waiting(self) -> str:
        """'waiting 23 s on <address>' while a request has been in flight longer than slow_request_s."""
        now = time.monotonic()
        slow = [now - started for started in self.in_flight.values() if now - started >= self.cfg.slow_request_s]
        if not slow:
            return ""
        more = f" ({len(slow)} requests)" if len(slow) > 1 else ""
        return f"waiting {max(slow):.0f} s on {address(self.cfg)}{more}"

    async def complete(self, request: Request) -> Failure | None:
        """None once a reply is logged; the last Failure when the item failed; raises ApiStopped."""
        retry = self.cfg.retry
        deadline = time.monotonic() + retry.budget_s
        for attempt in range(1, retry.max_attempts + 1):
            await self.limiter.acquire(request.tokens)
            started = time.monotonic()
            timeout = max(min(self.cfg.timeout_s, deadline - started), 0.01)
            failure = await self._send(request, attempt, timeout)
            if not isinstance(failure, Failure):
                self._write(failure)
                self.connect_streak = self.failure_streak = 0
                return None
            wait = backoff_seconds(failure, attempt, retry)
            self.connect_streak = self.connect_streak + 1 if failure.kind == "connect" else 0
            if failure.kind == "stop" or self.connect_streak >= retry.connect_failures_to_stop:
                self._write(error_entry(request, attempt, failure, "stopped", time.monotonic() - started))
                raise ApiStopped(await self._stop_message(failure))
            final = attempt == retry.max_attempts or time.monotonic() + wait >= deadline
            status = "refused" if failure.kind == "refused" else "gave_up" if final else "retry"
            self._write(error_entry(request, attempt, failure, status, time.monotonic() - started))
            if status != "retry":
                return failure
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt is final")

    async def _send(self, request: Request, attempt: int, timeout: float) -> dict[str, Any] | Failure:
        """One HTTP attempt: its reply's log entry, or what went wrong; in `in_flight` while it waits."""
        self.attempts_sent += 1
        sent, started = self.attempts_sent, time.monotonic()
        self.in_flight[sent] = started
        try:
            reply = await self.client.chat.completions.create(**request.body, timeout=timeout)
            return ok_entry(request, attempt, reply, time.monotonic() - started)
        except Exception as err:
            failure = classify(err, self.secret, timeout)
            self.summary.dropped += failure.dropped
            return failure
        finally:
            del self.in_flight[sent]

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


def ok_entry(request: Request, attempt: int, reply: Any, seconds: float) -> dict[str, Any]:
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


def error_entry(request: Request, attempt: int, failure: Failure, status: str, seconds: float) -> dict[str, Any]:
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
    """The requests with a progress bar that also names slow ones; a stop cancels all."""
    client = openai.AsyncOpenAI(api_key=secret, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s)
    limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
    state = _Run(client, cfg, secret, log, on_entry or (lambda entry: None), limiter, summary)

    def show(refresh: bool) -> None:
        parts = (f"failed={summary.failed}", postfix() if postfix else "", state.waiting())
        bar.set_postfix_str(" ".join(part for part in parts if part), refresh=refresh)

    async def settle(request: Request) -> Failure | None:
        failure = await state.complete(request)
        if failure is None:
            summary.done += 1
        else:
            state.count_failed_item(failure)
        show(refresh=False)
        bar.update(1)
        return failure

    async def heartbeat() -> None:
        """The bar names a request waiting longer than slow_request_s even while nothing completes (a hung server)."""
        while True:
            await asyncio.sleep(min(HEARTBEAT_S, cfg.slow_request_s / 2))
            show(refresh=True)

    async with client:
        beat = asyncio.create_task(heartbeat())
        try:
            await _preflight_then_workers(cfg, pending, settle)
        finally:
            beat.cancel()


async def _preflight_then_workers(
    cfg: ApiConfig, pending: list[Request], settle: Callable[[Request], Awaitable[Failure | None]]
) -> None:
    """The first request alone, so a wrong address, key or model fails in seconds; then `concurrency` workers."""
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
