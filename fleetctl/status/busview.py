"""The bus as `fleetctl status` sees it, as fleet-admin, with what it may already do
(docs/security.md): ping each worker (the reply is its status heartbeat), subscribe to the
heartbeats, look up the workers' consumers on the task stream, the fleet's streams, the
account's JetStream use and the spend counters. Nothing here reads a task or a result.
One look, or a live view that follows the heartbeats and looks again now and then."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fleetctl.bus import client as bus_client
from fleetctl.bus import clusterview, statusbus
from fleetctl.bus.names import NatsNames
from fleetctl.config.model import Fleet
from fleetctl.identity.natsaccess import SYSTEM_USER
from fleetctl.status.report import BrokerStatus, FleetStatus, ServerStatus, WorkerStatus
from poller import spend

PING_TIMEOUT = 2.0  # a live poller answers in milliseconds
SPEND_TIMEOUT = 2.0


class BusView:
    """One admin connection: the heartbeats as they arrive, and looks at the bus on demand.
    On a cluster, a fleet-sys connection (`system`) reads each broker too."""

    def __init__(
        self,
        nc: Any,
        fleet: Fleet,
        workers: list[WorkerStatus],
        brokers: Sequence[str] = (),
        system: Any = None,
        system_prefix: str = "",
    ) -> None:
        self.nc = nc
        self.fleet = fleet
        self.brokers = list(brokers)  # a cluster's brokers by name (none: one broker)
        self.system = system
        self.system_prefix = system_prefix
        self.names = NatsNames(fleet.nats.subject_prefix)
        self.workers = {w.worker_id: w for w in workers}
        self.changed = asyncio.Event()

    async def listen(self) -> None:
        """Heartbeats, attributed by subject (only that worker may publish there)."""

        async def on_status(msg: Any) -> None:
            self._note(msg.subject.split(".")[-2], msg.data)

        await self.nc.subscribe(self.names.status("*"), cb=on_status)

    async def _spend(self, broker: BrokerStatus) -> None:
        """Today's spend (UTC) against each daily budget, from the poller's counters."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        for w in self.workers.values():
            if w.daily_usd is not None:
                w.spent_today_usd, w.spend_problem = await self._counter(
                    f"worker.{w.worker_id}.{day}"
                )
        broker.fleet_daily_usd = next(
            (w.fleet_daily_usd for w in self.fleet.workers if w.fleet_daily_usd is not None), None
        )
        if broker.fleet_daily_usd is not None:
            broker.fleet_spent_today_usd, broker.fleet_spend_problem = await self._counter(
                f"fleet.{day}"
            )

    async def _counter(self, key: str) -> tuple[float | None, str | None]:
        """(USD spent, what is wrong with the counter), read with the poller's own rules:
        any worker may write the fleet's counter. Spent is None when it cannot be read
        (admin creds issued before status could read them: `fleetctl apply` re-issues
        them; the rest of the status does not depend on it) or is corrupt."""
        n = self.names
        try:
            last = await statusbus.kv_last(self.nc, n.spend_stream, n.spend(key), SPEND_TIMEOUT)
        except bus_client.BusError:  # no answer, or an error rather than a message
            return None, None
        if last is None:
            return 0.0, None
        counter = spend.parse(last.data, last.headers)
        return (None if counter.corrupt else round(counter.usd, 6)), counter.problem

    def _note(self, worker_id: str, data: bytes) -> None:
        worker = self.workers.get(worker_id)
        with contextlib.suppress(ValueError):
            body = json.loads(data)
            if worker is not None and isinstance(body, dict):
                worker.beat, worker.beat_at = body, time.time()
                self.changed.set()

    async def ping_all(self, timeout: float = PING_TIMEOUT) -> None:
        async def one(w: WorkerStatus) -> None:
            with contextlib.suppress(Exception):  # no answer: not heartbeating
                reply = await self.nc.request(self.names.ping(w.worker_id), b"", timeout=timeout)
                self._note(w.worker_id, reply.data)

        await asyncio.gather(*(one(w) for w in self.workers.values() if w.enabled))

    async def look(self, broker: BrokerStatus) -> None:
        """Consumers, streams, the account's JetStream use and the server's version."""
        n = self.names
        workers = list(self.workers.values())
        # At once, not one after another: on a cluster whose consumer leaders are moving
        # (a broker just went away), each may take the whole timeout to say nothing.
        infos = await asyncio.gather(
            *(
                statusbus.consumer_info(self.nc, n.task_stream, n.consumer(w.worker_id))
                for w in workers
            ),
            return_exceptions=True,
        )
        for w, info in zip(workers, infos, strict=True):
            if isinstance(info, bus_client.BusError) and self.brokers:
                w.consumer_error = str(info)  # its leader moving: shown, not fatal
                w.deployed = w.started_here
                continue
            if isinstance(info, BaseException):
                raise info
            w.consumer, w.consumer_error = info, None
            w.deployed = w.consumer is not None and w.started_here
        account = await statusbus.account_info(self.nc) or {}
        limits = account.get("limits") or {}
        broker.jetstream = {
            "memory_bytes": account.get("memory", 0),
            "storage_bytes": account.get("storage", 0),
            "max_memory_bytes": limits.get("max_memory"),
            "max_storage_bytes": limits.get("max_storage"),
        }
        for stream in (
            n.task_stream,
            n.results_stream,
            n.dead_stream,
            n.lease_stream,
            n.spend_stream,
            n.record_stream,
            n.judgment_stream,
        ):
            try:
                info = await statusbus.stream_info(self.nc, stream)
            except bus_client.BusError as e:
                if not self.brokers:
                    raise
                broker.streams[stream] = {"error": str(e)}  # its leader moving: shown
                continue
            if info is None:
                continue
            state, config = info.get("state") or {}, info.get("config") or {}
            broker.streams[stream] = {
                "messages": state.get("messages", 0),
                "bytes": state.get("bytes", 0),
                "max_bytes": config.get("max_bytes"),
            } | (copies(info) if self.brokers else {})
            if stream == n.dead_stream:
                broker.dead_letters = int(state.get("messages", 0))
                broker.dead_last_seq = int(state.get("last_seq", 0))
        await self._spend(broker)
        server = getattr(self.nc, "_server_info", None) or {}
        broker.server_version = str(server.get("version", ""))
        broker.reachable = True
        if self.brokers:
            await self._cluster(broker)

    async def _cluster(self, broker: BrokerStatus) -> None:
        """Each broker: up (it answered), routes, version, health; the meta leader."""
        if self.system is None:
            broker.cluster_error = f"no {SYSTEM_USER} credentials here to read the brokers with"
            return
        try:
            view = await clusterview.look(self.system, self.system_prefix, len(self.brokers))
        except bus_client.BusError as e:
            broker.cluster_error = str(e)
            return
        broker.cluster_error = ""
        broker.meta_leader = view.meta_leader
        broker.servers = [_server(name, view.brokers.get(name)) for name in self.brokers]


def _server(name: str, seen: clusterview.BrokerView | None) -> ServerStatus:
    if seen is None:
        return ServerStatus(name)
    return ServerStatus(name, True, seen.version, list(seen.routes), seen.healthy, seen.health)


def copies(info: dict[str, Any]) -> dict[str, Any]:
    """A replicated stream's leader and its other copies: each one's broker, whether it is
    current, how many operations it lags and when the leader last heard from it."""
    cluster = info.get("cluster") or {}
    return {
        "leader": cluster.get("leader"),
        "replicas": [
            {
                "name": r.get("name"),
                "current": bool(r.get("current")),
                "lag": int(r.get("lag") or 0),
                "active_s": round(int(r.get("active") or 0) / 1e9, 1),
                "offline": bool(r.get("offline")),
            }
            for r in cluster.get("replicas") or []
        ],
    }


# ---- one look, or a live view ---------------------------------------------------------------


@dataclass(frozen=True)
class ClusterWay:
    """How status reads a cluster's brokers: their names, and fleet-sys's endpoint (None:
    no creds for it here, which the status says)."""

    brokers: tuple[str, ...]
    system: bus_client.Endpoint | None = None


async def _open(
    endpoint: bus_client.Endpoint, status: FleetStatus, fleet: Fleet, cluster: ClusterWay | None
) -> BusView:
    nc = await bus_client.connect(endpoint)
    system = None
    try:
        if cluster is not None and cluster.system is not None:
            try:
                system = await bus_client.connect(cluster.system)
            except bus_client.BusError as e:
                status.broker.cluster_error = str(e)
        prefix = cluster.system.identity.inbox_prefix if cluster and cluster.system else ""
        brokers = cluster.brokers if cluster is not None else ()
        view = BusView(nc, fleet, status.workers, brokers, system, prefix)
        await view.listen()
        await view.ping_all()
        await view.look(status.broker)
    except BaseException:
        await nc.close()
        if system is not None:
            await system.close()
        raise
    return view


async def _close(view: BusView) -> None:
    await view.nc.close()
    if view.system is not None:
        await view.system.close()


async def look_once(
    endpoint: bus_client.Endpoint,
    status: FleetStatus,
    fleet: Fleet,
    cluster: ClusterWay | None = None,
) -> None:
    view = await _open(endpoint, status, fleet, cluster)
    await _close(view)


async def follow(
    endpoint: bus_client.Endpoint,
    status: FleetStatus,
    fleet: Fleet,
    show: Callable[[float], None],
    *,
    every: float = 2.0,
    until: float | None = None,
    cluster: ClusterWay | None = None,
) -> None:
    """Show the status, then again on each heartbeat and after each look at the bus (every
    `every` seconds: consumers and streams are not pushed), and at least once a second. A
    worker not heard from for two of its heartbeat intervals turns `not heartbeating`: judged
    at the time (Unix seconds) `show` is given, so what it shows is what was judged. Runs
    until cancelled (or `until`, monotonic)."""
    view = await _open(endpoint, status, fleet, cluster)
    try:
        show(time.time())
        last_look = time.monotonic()
        while until is None or time.monotonic() < until:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(view.changed.wait(), timeout=min(every, 1.0))
            view.changed.clear()
            if time.monotonic() - last_look >= every:
                await view.look(status.broker)
                last_look = time.monotonic()
            now = time.time()
            status.mark_silent(now)
            show(now)
    finally:
        await _close(view)
