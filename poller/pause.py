"""The worker's pause: while a provider turns its CLI away (a rate limit, an exhausted quota,
an overload), the worker fetches no task, and the heartbeat says why and until when.

It lasts until the reset the CLI named, or a backoff that grows with each limit in a row
(a task that runs to its end without one starts the count again): a worker that would fail
every task in seconds waits instead, while its `pick: any` route's other members take the
shared queue. docs/poller.md, "Rate limits and provider outages".
"""

from __future__ import annotations

import asyncio
import time

from poller.heartbeat import Stats
from poller.limits import Kind, Limit
from poller.logs import Logger

# The first backoff of each kind and the longest one, in seconds, when no reset is named
# (with LIMIT_BACKOFF at its default, 60; another value scales them all).
BACKOFF: dict[Kind, tuple[float, float]] = {
    "rate limited": (60.0, 1800.0),
    "quota exhausted": (900.0, 3600.0),
    "provider overloaded": (30.0, 600.0),
}
DEFAULT_FIRST = BACKOFF["rate limited"][0]


class Pause:
    def __init__(
        self,
        stats: Stats,
        log: Logger,
        halt: asyncio.Event | None = None,
        first: float = DEFAULT_FIRST,
    ) -> None:
        self.stats, self.log = stats, log
        self.scale = first / DEFAULT_FIRST
        self.until = 0.0  # Unix seconds; over once passed
        self.in_a_row = 0
        # Set when a pause begins: the pull loop withdraws its waiting request.
        self.halt = halt if halt is not None else asyncio.Event()

    def begin(self, limit: Limit, now: float | None = None) -> float:
        """Pause until the limit's reset, or the next backoff; never shortens a pause.
        Returns until when (Unix seconds)."""
        now = time.time() if now is None else now
        self.in_a_row += 1
        first, longest = BACKOFF[limit.kind]
        backoff = min(first * 2 ** (self.in_a_row - 1), longest) * self.scale
        until = limit.until if limit.until is not None else now + backoff
        if until > self.until:
            self.until = until
            self.stats.paused_until = round(until, 3)
            self.stats.pause_reason = limit.kind
            self.stats.touch()
            self.halt.set()
        self.log.warning(
            "paused",
            reason=limit.kind,
            until=round(self.until, 3),
            for_s=round(self.until - now, 1),
            reset_named=limit.until is not None,
            detail=limit.detail,
        )
        return self.until

    def succeeded(self) -> None:
        """A task ran to its end without a limit: the next backoff starts from the first."""
        self.in_a_row = 0

    def active(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.until

    async def over(self, stop: asyncio.Event) -> bool:
        """Wait until the pause is over (True), or `stop` is set first (False)."""
        while self.active():
            waiter = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter}, timeout=max(self.until - time.time(), 0.01))
            finally:
                waiter.cancel()
            if stop.is_set():
                return False
        if self.stats.paused_until is not None:
            self.stats.paused_until = self.stats.pause_reason = None
            self.stats.touch()
            self.log.info("resumed")
        return not stop.is_set()
