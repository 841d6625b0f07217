"""Worker status: a heartbeat on `<prefix>.worker.<id>.status` and a reply on `.ping`.

Both are core NATS (not stored): a status is only interesting while it is fresh, and a missing
heartbeat is itself the signal that a worker is gone or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from poller import __version__
from poller.activity import Activity


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
    # SIGTERM received: no new task is fetched; running ones have until `drain_until`
    # (Unix seconds) to finish.
    draining: bool = False
    drain_until: float | None = None
    # Not fetching until then (Unix seconds), and why (a rate limit, an overloaded provider).
    paused_until: float | None = None
    pause_reason: str | None = None
    # Set when something a reader cares about changed (a task started or ended, the drain
    # began): the next heartbeat goes out at once instead of at the next interval.
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def touch(self) -> None:
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
            "ts": time.time(),
        }


class _Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes = b"") -> None: ...


# A change is published at most this often (a burst of them makes one heartbeat).
CHANGE_SETTLE = 0.05


async def beat(nc: _Publisher, subject: str, stats: Stats, interval: float) -> None:
    """Publish the status every `interval` seconds, and soon after a change, until
    cancelled; errors are skipped."""
    while True:
        stats.changed.clear()
        with contextlib.suppress(Exception):  # disconnected: the next beat tries again
            await nc.publish(subject, json.dumps(stats.snapshot()).encode())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stats.changed.wait(), interval)
            await asyncio.sleep(CHANGE_SETTLE)
