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


@dataclass
class Stats:
    """Counters the delivery loop updates and the heartbeat reports."""

    worker_id: str
    backend: str
    llm: str
    concurrency: int
    started: float = field(default_factory=time.monotonic)
    # stream sequence -> (task id, monotonic start)
    running: dict[int, tuple[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    state: str = "starting"  # starting | running | stopping
    labels: Mapping[str, str] = field(default_factory=dict)

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
                {"task_id": t, "running_s": round(now - s, 1)} for t, s in self.running.values()
            ],
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


async def beat(nc: _Publisher, subject: str, stats: Stats, interval: float) -> None:
    """Publish the status every `interval` seconds until cancelled; errors are skipped."""
    while True:
        with contextlib.suppress(Exception):  # disconnected: the next beat tries again
            await nc.publish(subject, json.dumps(stats.snapshot()).encode())
        await asyncio.sleep(interval)
