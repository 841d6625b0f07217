"""Worker status: a heartbeat on `<prefix>.worker.<id>.status` and a reply on `.ping`.

Both are core NATS (not stored): a status is only interesting while it is fresh, and a missing
heartbeat is itself the signal that a worker is gone or stopped. A heartbeat goes out every
interval, at once after a change a reader waits for (a task started or ended, the drain, a
pause), and soon after a task's step changed (a new turn, a tool started or ended), at most
once per ACTIVITY_GAP for that (`Pacer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from poller import __version__
from poller.activity import Activity

# A change is published at most this often (a burst of them makes one heartbeat).
CHANGE_SETTLE = 0.05
# A task's step (a new turn, a tool started or ended) makes a heartbeat no sooner than this
# after the last one: a waiting reader sees a step within a second (a tool that runs longer
# is seen while it runs), and a busy fleet costs the broker at most one more small message
# (~1 KB) per worker per second (100 busy workers: 100 a second, ~100 KB/s, for every
# subscriber), however fast their CLIs call tools; unbounded, a CLI's burst of quick tool
# calls would be a heartbeat each.
ACTIVITY_GAP = 1.0
DEFAULT_INTERVAL = 5.0  # HEARTBEAT_INTERVAL's default (poller/config.py)


@dataclass
class Pacer:
    """When the next heartbeat is due, in monotonic seconds: `interval` after the last one,
    sooner after a change (`changed`: at once, give or take `settle`), and after a step of a
    task (`stirred`) not before `gap` after the last one. Pure: told the time, so its rule
    is tested as data."""

    interval: float
    gap: float = ACTIVITY_GAP
    settle: float = CHANGE_SETTLE
    last: float = -math.inf  # when the last heartbeat went out
    due: float = -math.inf  # the first one at once

    def sent(self, now: float) -> None:
        self.last, self.due = now, now + self.interval

    def changed(self, now: float) -> None:
        self.due = min(self.due, now + self.settle)

    def stirred(self, now: float) -> None:
        self.due = min(self.due, max(now + self.settle, self.last + self.gap))


@dataclass
class Stats:
    """Counters the delivery loop updates and the heartbeat reports."""

    worker_id: str
    backend: str
    llm: str
    concurrency: int
    started: float = field(default_factory=time.monotonic)
    # stream sequence -> what that task is doing now
    running: dict[int, Activity] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    state: str = "starting"  # starting | running | stopping | stopped
    labels: Mapping[str, str] = field(default_factory=dict)
    interval: float = DEFAULT_INTERVAL  # seconds between heartbeats (HEARTBEAT_INTERVAL)
    # SIGTERM received: no new task is fetched; running ones have until `drain_until`
    # (Unix seconds) to finish.
    draining: bool = False
    drain_until: float | None = None
    # Not fetching until then (Unix seconds), and why (a rate limit, an overloaded provider).
    paused_until: float | None = None
    pause_reason: str | None = None
    # When the next heartbeat is due; `changed` wakes the heartbeat to look again.
    pacer: Pacer = field(init=False, repr=False)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        self.pacer = Pacer(self.interval)

    def touch(self) -> None:
        """Something a reader waits for changed (a task started or ended, the drain began,
        a pause): the next heartbeat goes out at once instead of at the next interval."""
        self.pacer.changed(time.monotonic())
        self.changed.set()

    def stir(self) -> None:
        """A running task's step changed (a new turn, a tool started or ended): a heartbeat
        goes out soon, rate-limited (ACTIVITY_GAP)."""
        self.pacer.stirred(time.monotonic())
        self.changed.set()

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "version": 1,
            "worker_id": self.worker_id,
            "state": self.state,
            "status": "busy" if self.running else "idle",
            "current_tasks": [
                {"task_id": a.task_id, "running_s": round(now - a.since, 1)}
                for a in self.running.values()
            ],
            "in_flight": [a.as_json(now) for a in self.running.values()],
            "draining": self.draining,
            "drain_until": self.drain_until,
            "paused_until": self.paused_until,
            "pause_reason": self.pause_reason,
            "concurrency": self.concurrency,
            "counts": dict(self.counts),
            "backend": self.backend,
            "llm": self.llm,
            "labels": dict(self.labels),
            "poller_version": __version__,
            "host": socket.gethostname(),
            "uptime_s": round(now - self.started, 1),
            "heartbeat_interval_s": self.interval,
            "ts": time.time(),
        }


class _Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes = b"") -> None: ...


async def beat(nc: _Publisher, subject: str, stats: Stats) -> None:
    """Publish the status whenever `stats.pacer` says it is due, until cancelled; errors
    are skipped."""
    while True:
        stats.changed.clear()
        data = json.dumps(stats.snapshot()).encode()
        stats.pacer.sent(time.monotonic())  # a change from now on makes another one
        with contextlib.suppress(Exception):  # disconnected: the next beat tries again
            await nc.publish(subject, data)
        while (left := stats.pacer.due - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stats.changed.wait(), left)
            stats.changed.clear()  # the pacer has the new due time
