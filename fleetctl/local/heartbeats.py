"""Which workers are alive: the status heartbeats on `<prefix>.worker.*.status`, read as
fleet-admin (the one fleet user that may subscribe there) in a thread of its own.

A worker is attributed by the subject its heartbeat came on, not by the body: the server
lets only that worker publish there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

from fleetctl.bus import client as bus_client
from fleetctl.bus.names import NatsNames


class Heartbeats:
    def __init__(self, endpoint: bus_client.Endpoint, prefix: str) -> None:
        self.endpoint = endpoint
        self.names = NatsNames(prefix)
        self._seen: dict[str, float] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def seen_since(self, worker_id: str, since: float) -> bool:
        """Has `worker_id` sent a heartbeat after monotonic time `since`?"""
        with self._lock:
            return self._seen.get(worker_id, -1.0) > since

    def last(self, worker_id: str) -> dict[str, Any] | None:
        """The newest heartbeat of `worker_id`, as it sent it (None: none, or not JSON)."""
        with self._lock:
            return self._last.get(worker_id)

    def _record(self, subject: str, data: bytes) -> None:
        parts = subject.split(".")
        if len(parts) >= 4:
            try:
                body = json.loads(data)
            except ValueError:
                body = None
            with self._lock:
                self._seen[parts[-2]] = time.monotonic()
                if isinstance(body, dict):
                    self._last[parts[-2]] = body

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(bus_client.BusError):
                asyncio.run(self._listen())
            self._stop.wait(0.5)

    async def _listen(self) -> None:
        nc = await bus_client.connect(self.endpoint)

        async def on_status(msg: Any) -> None:
            self._record(msg.subject, msg.data)

        try:
            await nc.subscribe(self.names.status("*"), cb=on_status)
            while not self._stop.is_set() and nc.is_connected:
                await asyncio.sleep(0.1)
        finally:
            await nc.close()
