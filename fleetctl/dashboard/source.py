"""The dashboard's view of the fleet: one client on the bus as fleet-dashboard, the task
index loaded once and then kept current by following the bus, and the listeners (the
open pages' event streams) told of each change."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetctl.dashboard.index import TaskIndex
from fleetctl.status import snapshot
from fleetctl.status.hosts import HostsWatch
from fleetctl.tasks.client import Client
from fleetctl.tasks.following import Change

EVERYTHING = 10 * 365 * 86400.0  # records "since": all the bucket keeps


@dataclass(frozen=True)
class Event:
    kind: str  # record, result, judgment
    task_id: str
    worker_id: str | None


class Listeners:
    """The open event streams, each a queue on the web server's loop; told from the
    client's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = []

    def open(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._queues.append((asyncio.get_running_loop(), queue))
        return queue

    def close(self, queue: asyncio.Queue[Event]) -> None:
        with self._lock:
            self._queues = [(lp, q) for lp, q in self._queues if q is not queue]

    def tell(self, event: Event) -> None:
        with self._lock:
            queues = list(self._queues)
        for loop, queue in queues:
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # its loop has closed
                self.close(queue)

    def __len__(self) -> int:
        return len(self._queues)


def _offer(queue: asyncio.Queue[Event], event: Event) -> None:
    if not queue.full():  # a page that stopped reading misses events, nothing else does
        queue.put_nowait(event)


class Source:
    def __init__(
        self,
        client: Client,
        fleet_path: Path,
        *,
        on_server: bool,
        hosts: HostsWatch | None = None,
    ) -> None:
        """`hosts`: the hosts' units looked at in the background (None: not observed, a
        local fleet or --no-hosts); started with the rest."""
        self.client = client
        self.hosts = hosts
        self.fleet = client.fleet
        self.fleet_path = fleet_path
        self.on_server = on_server
        self.index = TaskIndex()
        self.listeners = Listeners()

    def start(self) -> None:
        """Follow first, then load: nothing published meanwhile is missed (a change seen
        twice is the same change). The hosts' first look runs meanwhile."""
        if self.hosts is not None:  # each look at the hosts refreshes the Status pages
            self.hosts.seen = lambda: self.listeners.tell(Event("status", "", None))
            self.hosts.start()
        self.client.follow(self._changed)
        self.index.load(
            self.client.records(EVERYTHING),
            self.client.stored_results(None),
            self.client.every_judgment(),
        )

    def _changed(self, change: Change) -> None:
        if change.kind == "status":  # a heartbeat: the Status page looks again
            self.listeners.tell(Event("status", "", change.worker_id))
        elif self.index.apply(change.kind, change.task_id, change.worker_id, change.data):
            self.listeners.tell(Event(change.kind, change.task_id, change.worker_id))

    async def status(self) -> dict[str, Any]:
        return await snapshot.look(
            self.client.endpoint,
            self.fleet,
            self.fleet_path,
            on_server=self.on_server,
            hosts=self.hosts,
        )

    @property
    def labels(self) -> dict[str, dict[str, str]]:
        return {w.id: dict(w.labels) for w in self.fleet.workers}
