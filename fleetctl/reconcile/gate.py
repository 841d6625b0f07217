"""What apply asks the bus about workers: what a poller is doing before it is restarted (its
tasks in flight, to say what the restart waits for), and whether a poller it started is
healthy (its health gate): it answers a ping with the new `poller_version` from a process
that has been up for at least `--settle` seconds, so one that crash-loops under systemd's
`Restart=` does not pass because it happened to be up at the moment it was asked.

One bus connection for the whole apply, as fleet-admin, through an SSH forward over the
broker's connection, opened at first use (after the broker's wave) from any host's thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Protocol

from fleetctl.bus import client as bus_client
from fleetctl.bus.names import NatsNames
from fleetctl.identity import fleetusers
from fleetctl.reconcile.observation import LiveView
from fleetctl.transport.base import TransportError

PING_TIMEOUT = 1.0  # seconds for one ping's answer


class Workers(Protocol):
    """The bus as the rollout sees it (a stand-in in the rollout's unit tests)."""

    def now(self, workers: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """Each worker's status (its ping's answer), for those that answer at once."""
        ...

    def settled(
        self, workers: Sequence[str], version: str | None, settle: float, wait: float
    ) -> dict[str, str]:
        """Why each worker that is not healthy is not (after up to `wait` seconds)."""
        ...

    def close(self) -> None: ...


def in_flight(status: Mapping[str, Any]) -> int:
    """How many tasks a worker's status says it runs (`in_flight`; older pollers:
    `current_tasks`)."""
    tasks = status.get("in_flight")
    if not isinstance(tasks, list):
        tasks = status.get("current_tasks")
    return len(tasks) if isinstance(tasks, list) else 0


def unhealthy(status: Mapping[str, Any], version: str | None, settle: float) -> str | None:
    """Why an answer does not pass the gate, or None."""
    running = status.get("poller_version")
    if version is not None and running != version:
        return f"answers as poller {running}, not {version}"
    uptime = status.get("uptime_s")
    if not isinstance(uptime, int | float) or uptime < settle:
        return f"was restarted {uptime} s before it answered: it does not stay up {settle:g} s"
    return None


class NoBus:
    """`Workers` when the bus was not seen: nothing to say, no gate to pass."""

    def now(self, workers: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        return {}

    def settled(
        self, workers: Sequence[str], version: str | None, settle: float, wait: float
    ) -> dict[str, str]:
        return {}

    def close(self) -> None:
        return None


class BusWorkers:
    """`Workers` over the fleet's bus. Without a way to the bus (the plan leaves it out),
    nothing is asked and every worker passes: as apply did before it had a gate."""

    def __init__(self, view: LiveView) -> None:
        self._view = view
        self._guard = threading.Lock()
        self._stack = ExitStack()
        self._nc: Any = None
        self._loop: Any = None
        self._error: str | None = None
        self._names = NatsNames(view.fleet.nats.subject_prefix)

    @property
    def reachable(self) -> bool:
        bus = self._view.plan.bus
        return bus is not None and bus.via in self._view.sessions

    def _open(self) -> Any:
        with self._guard:
            if self._nc is not None or self._error is not None:
                return self._nc
            bus = self._view.plan.bus
            assert bus is not None
            try:
                from fleetctl.bus.loop import Loop

                session = self._view.sessions[bus.via]
                who = fleetusers.identity(self._view.fleet)
                endpoint = self._stack.enter_context(
                    bus_client.through(session.transport, self._view.fleet, who)
                )
                self._loop = Loop()
                self._stack.callback(self._loop.close)
                self._nc = self._loop.call(bus_client.connect(endpoint))
            except (TransportError, bus_client.BusError) as e:
                self._error = f"could not reach the bus to ping it: {e}"
            return self._nc

    def now(self, workers: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        if not workers or not self.reachable or self._open() is None:
            return {}
        answers: dict[str, Mapping[str, Any]] = self._loop.call(self._ask_all(workers))
        return answers

    def settled(
        self, workers: Sequence[str], version: str | None, settle: float, wait: float
    ) -> dict[str, str]:
        if not workers or not self.reachable:
            return {}
        if self._open() is None:
            return {w: str(self._error) for w in workers}
        found: dict[str, str] = self._loop.call(self._settle_all(workers, version, settle, wait))
        return found

    async def _ask(self, worker: str) -> Mapping[str, Any] | None:
        try:
            msg = await self._nc.request(self._names.ping(worker), b"", timeout=PING_TIMEOUT)
            answer = json.loads(msg.data)
        except Exception:  # no responder, a timeout, an unreadable answer: no status now
            return None
        return answer if isinstance(answer, dict) else None

    async def _ask_all(self, workers: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        import asyncio

        answers = await asyncio.gather(*(self._ask(w) for w in workers))
        return {w: a for w, a in zip(workers, answers, strict=True) if a is not None}

    async def _settle_all(
        self, workers: Sequence[str], version: str | None, settle: float, wait: float
    ) -> dict[str, str]:
        import asyncio

        deadline = time.monotonic() + wait

        async def one(worker: str) -> str | None:
            why = f"did not answer its ping within {wait:g} s"
            while time.monotonic() < deadline:
                answer = await self._ask(worker)
                if answer is not None:
                    found = unhealthy(answer, version, settle)
                    if found is None:
                        return None
                    why = found
                await asyncio.sleep(0.5)
            return why

        answers = await asyncio.gather(*(one(w) for w in workers))
        return {w: why for w, why in zip(workers, answers, strict=True) if why is not None}

    def close(self) -> None:
        with self._guard:
            if self._nc is not None and self._loop is not None:
                # closing a connection that broke: nothing is left to do
                with contextlib.suppress(Exception):
                    self._loop.call(self._nc.close())
            self._stack.close()
