"""Client-side request and token rate limits, so a long run stays under the account's quota."""

from __future__ import annotations

import asyncio
import time


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
