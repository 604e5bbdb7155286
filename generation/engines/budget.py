"""Run-wide request budgets for a served model: in-flight requests, requests per minute, tokens per minute.

One ``RequestBudget`` serves every caller of one HTTP engine in the run: rayjobs/ runs it as a Ray actor that every
generate actor asks before each request, so the limits hold for the whole run, not per actor. Rates are token
buckets holding at most one second of budget (the burst): over any window of T seconds a bucket admits at most
rate × T + burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time


class Bucket:
    """A token bucket refilled at ``per_minute / 60`` per second, holding at most ``burst``; it may go into debt when a
    request used more than it was charged."""

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"a per-minute budget must be positive, got {per_minute!r}")
        self.rate = per_minute / 60.0
        self.burst = max(1.0, self.rate)
        self.level, self.at = self.burst, time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` can be taken (0: now). More than the burst is taken from a full bucket."""
        self._refill()
        needed = min(amount, self.burst)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.burst, self.level + amount)


class RequestBudget:
    """Permits for requests to one server. ``acquire`` waits for a free slot and for the rate budgets, and returns a
    lease; ``release`` frees the slot and books the tokens the request really used. A lease not released within
    ``lease_s`` (its holder died) is taken back, so a killed actor cannot shrink the run's concurrency for good."""

    def __init__(
        self,
        max_concurrency: int,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        lease_s: float = 900.0,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}")
        self.max_concurrency, self.lease_s = max_concurrency, lease_s
        self.requests = Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = Bucket(tokens_per_minute) if tokens_per_minute else None
        self._leases: dict[int, tuple[float, int]] = {}  # lease → (taken at, tokens charged)
        self._ids = itertools.count()
        self._changed = asyncio.Condition()
        self.peak = 0

    def _reap(self) -> None:
        oldest = time.monotonic() - self.lease_s
        for lease in [k for k, (at, _) in self._leases.items() if at < oldest]:
            del self._leases[lease]

    def _wait_s(self, tokens: int) -> float | None:
        """Seconds to wait before a request of ``tokens`` may go (0: now; None: until a slot frees)."""
        self._reap()
        if len(self._leases) >= self.max_concurrency:
            return None
        waits = [b.wait_s(amount) for b, amount in ((self.requests, 1), (self.tokens, tokens)) if b is not None]
        return max(waits, default=0.0)

    async def acquire(self, tokens: int = 0) -> int:
        async with self._changed:
            while (wait := self._wait_s(tokens)) != 0.0:
                # A release wakes the waiters; a rate wait, or a wait for a lost lease to expire, ends with the timeout.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=wait if wait is not None else 1.0)
            if self.requests is not None:
                self.requests.take(1)
            if self.tokens is not None:
                self.tokens.take(tokens)
            lease = next(self._ids)
            self._leases[lease] = (time.monotonic(), tokens)
            self.peak = max(self.peak, len(self._leases))
            return lease

    async def release(self, lease: int, used_tokens: int | None = None) -> None:
        async with self._changed:
            _, charged = self._leases.pop(lease, (0.0, 0))
            if self.tokens is not None and used_tokens is not None:
                self.tokens.give_back(charged - used_tokens)  # negative: the request cost more than charged
            self._changed.notify_all()

    async def figures(self) -> dict[str, int]:
        return {"peak_in_flight": self.peak, "in_flight": len(self._leases)}
