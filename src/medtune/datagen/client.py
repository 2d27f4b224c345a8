"""Chat-completion calls through the official `openai` client, with our own retry policy.

The client's built-in retries are off (`max_retries=0`) because:
- it retries every 429 the same way, including `insufficient_quota`, which never clears by waiting;
- its retries are invisible, and every attempt must reach the raw log (what was paid, what failed);
- it caps honoured Retry-After at 60 s and falls back to its own short backoff beyond that.
Here: 429 waits Retry-After (capped by retry.max_retry_after_s); 5xx, timeouts, connection errors
and malformed bodies back off exponentially with jitter; 401/403/404 and exhausted quota stop the
run (`GenerationStopped`); 400/422 fail only that chunk. The API key never appears in any message.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

from medtune.datagen.config import GeneratorConfig, RetryConfig
from medtune.datagen.ratelimit import RateLimiter
from medtune.errors import ConfigError, MedtuneError

LOCAL_DUMMY_KEY = "not-needed"  # local servers (vLLM, Ollama) accept any key; the client needs one


class GenerationStopped(MedtuneError):
    """The API refused to go on (bad key, no permission, unknown model, exhausted quota)."""


def api_key(gen: GeneratorConfig) -> str:
    key = os.environ.get(gen.api_key_env, "")
    if key:
        return key
    if gen.base_url and _is_local(gen.base_url):
        return LOCAL_DUMMY_KEY
    raise ConfigError(f"set the API key in ${gen.api_key_env} (generator.api_key_env names the variable).")


def _is_local(url: str) -> bool:
    return any(host in url for host in ("://127.0.0.1", "://localhost", "://[::1]", "://0.0.0.0"))


def build_client(gen: GeneratorConfig, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=gen.base_url, max_retries=0, timeout=gen.timeout_s)


def request_body(passage_prompt: str, gen: GeneratorConfig) -> dict[str, Any]:
    """The exact request; its hash is the resume key, so any change of text or parameters is a new call."""
    body: dict[str, Any] = {
        "model": gen.model,
        "messages": [{"role": "user", "content": passage_prompt}],
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "max_tokens": gen.max_tokens,
    }
    if gen.seed is not None:
        body["seed"] = gen.seed
    return body


def request_key(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Failure:
    kind: str  # retry | chunk_failed | fatal
    message: str
    http_status: int | None = None
    retry_after: float | None = None


def classify(err: Exception, secret: str) -> Failure:
    """What an exception from the client means for this chunk and for the run."""
    message = redact(f"{type(err).__name__}: {err}", secret)
    if isinstance(err, openai.APIStatusError):
        status, code = err.status_code, err.code or ""
        if status in (401, 403, 404) or code == "insufficient_quota" or err.type == "insufficient_quota":
            return Failure("fatal", message, status)
        if status in (400, 422):
            return Failure("chunk_failed", message, status)
        return Failure("retry", message, status, retry_after_seconds(err.response.headers))
    if isinstance(err, openai.APIConnectionError | openai.APIResponseValidationError | ValueError):
        return Failure("retry", message)  # timeouts, refused connections, a malformed (non-JSON) body
    raise err


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


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def backoff_seconds(failure: Failure, attempt: int, retry: RetryConfig) -> float:
    """Retry-After when the server gave one, else initial × 2^(attempt-1) with ±25 % jitter."""
    if failure.retry_after is not None:
        return min(failure.retry_after, retry.max_retry_after_s)
    delay = min(retry.backoff_initial_s * 2 ** (attempt - 1), retry.backoff_max_s)
    return delay * random.uniform(0.75, 1.25)


@dataclass
class Caller:
    """Sends one request with retries; reports each attempt to `log` (the raw log writer)."""

    client: openai.AsyncOpenAI
    gen: GeneratorConfig
    limiter: RateLimiter
    secret: str
    log: Callable[[dict[str, Any]], None]

    async def complete(self, key: str, chunk_id: str, body: dict[str, Any], tokens_estimate: float) -> bool:
        """True once a reply is logged; False if this chunk failed for this run; raises GenerationStopped."""
        retry = self.gen.retry
        for attempt in range(1, retry.max_attempts + 1):
            await self.limiter.acquire(tokens_estimate)
            started = time.monotonic()
            try:
                reply = await self.client.chat.completions.create(**body)
            except Exception as err:
                failure = classify(err, self.secret)
                final = failure.kind != "retry" or attempt == retry.max_attempts
                self.log(_error_entry(key, chunk_id, attempt, failure, time.monotonic() - started, final))
                if failure.kind == "fatal":
                    raise GenerationStopped(_stop_message(failure, self.gen)) from None
                if final:
                    return False
                await asyncio.sleep(backoff_seconds(failure, attempt, retry))
                continue
            self.log(_ok_entry(key, chunk_id, attempt, reply, time.monotonic() - started))
            return True
        return False


def _ok_entry(key: str, chunk_id: str, attempt: int, reply: Any, seconds: float) -> dict[str, Any]:
    choice = reply.choices[0]
    usage = reply.usage
    return {
        "key": key,
        "chunk_id": chunk_id,
        "attempt": attempt,
        "status": "ok",
        "model": reply.model,
        "content": choice.message.content or "",
        "finish_reason": choice.finish_reason,
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        if usage
        else None,
        "seconds": round(seconds, 3),
        "time": time.time(),
    }


def _error_entry(
    key: str, chunk_id: str, attempt: int, failure: Failure, seconds: float, final: bool
) -> dict[str, Any]:
    return {
        "key": key,
        "chunk_id": chunk_id,
        "attempt": attempt,
        "status": _final_status(failure) if final else "retry",
        "http_status": failure.http_status,
        "error": failure.message,
        "retry_after": failure.retry_after,
        "seconds": round(seconds, 3),
        "time": time.time(),
    }


def _final_status(failure: Failure) -> str:
    """fatal | chunk_failed | gave_up (a retryable error outlasted retry.max_attempts)."""
    return "gave_up" if failure.kind == "retry" else failure.kind


def _stop_message(failure: Failure, gen: GeneratorConfig) -> str:
    where = gen.base_url or "api.openai.com"
    hints = {
        401: f"the API key in ${gen.api_key_env} was refused",
        403: f"the key has no access to model {gen.model!r}",
        404: f"model {gen.model!r} or the endpoint was not found",
    }
    hint = hints.get(failure.http_status or 0, "the account's quota is exhausted (insufficient_quota)")
    return (
        f"stopped: {hint} at {where} ({failure.message}). Finished chunks are saved; fix this and rerun "
        "with the same output_dir to continue without paying for them again."
    )
