"""The fleet at a glance: each worker's state and backlog, each host's units, the broker.

Read as `fleet-admin`, with what it may already do (docs/security.md): ping each worker (the
reply is its status heartbeat), subscribe to the heartbeats, look up the workers' consumers
on the task stream, the fleet's streams and the account's JetStream use (`$JS.API.INFO`).
Nothing here reads a task or a result. Hosts come from the same observation as a live plan
(read only, no lock); a local fleet (`fleetctl up`) has no hosts to reach over SSH.

`problems` are what needs a human (`status --check` exits 1): a deployed worker not
heartbeating, a unit down, a backlog over `status.max_lag`, dead letters since the last look,
credentials expiring within `creds.expiry_warning`, a spend counter that is corrupt or was
reset today because it was (poller/spend.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.bus import client as bus_client
from fleetctl.bus.names import NatsNames
from fleetctl.config.model import Fleet
from poller import spend

VERSION = 1
API = "$JS.API"
PING_TIMEOUT = 2.0  # a live poller answers in milliseconds
SPEND_TIMEOUT = 2.0
HEARTBEAT_INTERVAL = 5.0  # the poller's default (docs/poller.md); fleetctl does not change it
STALE_AFTER = 2 * HEARTBEAT_INTERVAL  # --watch: two heartbeats missed
NO_TASKS_TODAY = "the budget counts as spent for the rest of the UTC day (docs/security.md)"


@dataclass
class WorkerStatus:
    worker_id: str
    host: str
    enabled: bool
    labels: Mapping[str, str]
    beat: Mapping[str, Any] | None = None  # the newest heartbeat or ping reply
    beat_at: float | None = None  # when it arrived (time.time())
    consumer: Mapping[str, Any] | None = None
    deployed: bool = False
    creds_expires_at: int | None = None
    started_here: bool = True  # False: a local fleet that could not start it (no CLI here)
    daily_usd: float | None = None  # its budget, and what it spent today (UTC), if it has one
    spent_today_usd: float | None = None
    spend_problem: str | None = None  # its counter is corrupt, or was reset today

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.beat is None or self.beat.get("state") == "stopped":
            return "not heartbeating" if self.deployed else "not deployed"
        return "busy" if self.beat.get("current_tasks") else "idle"

    def heartbeat_age(self, now: float) -> float | None:
        if self.beat is None:
            return None
        sent = self.beat.get("ts")
        at = float(sent) if isinstance(sent, int | float) else (self.beat_at or now)
        return round(max(0.0, now - at), 1)

    def count(self, key: str) -> int:
        value = (self.consumer or {}).get(key)
        return value if isinstance(value, int) else 0

    def as_json(self, now: float) -> dict[str, Any]:
        beat = self.beat or {}
        found, running = beat.get("counts"), beat.get("current_tasks")
        counts: Mapping[str, int] = found if isinstance(found, dict) else {}
        tasks: list[Any] = running if isinstance(running, list) else []
        return {
            "worker_id": self.worker_id,
            "state": self.state,
            "host": self.host,
            "heartbeat_age_s": self.heartbeat_age(now),
            "current_tasks": tasks,
            "version": beat.get("poller_version"),
            "uptime_s": beat.get("uptime_s"),
            "pending": self.count("num_pending"),
            "ack_pending": self.count("num_ack_pending"),
            "redelivered": self.count("num_redelivered"),
            "completed": counts.get("completed", 0),
            "failed": sum(v for k, v in counts.items() if k != "completed" and isinstance(v, int)),
            "labels": dict(self.labels),
            "creds_expires_at": self.creds_expires_at,
            "daily_usd": self.daily_usd,
            "spent_today_usd": self.spent_today_usd,
            "spend_problem": self.spend_problem,
        }


@dataclass
class HostStatus:
    name: str
    reachable: bool
    error: str = ""
    units: dict[str, str] = field(default_factory=dict)  # unit -> "active" or why it is not

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "reachable": self.reachable, "error": self.error} | {
            "units": [{"unit": u, "state": s} for u, s in sorted(self.units.items())]
        }


@dataclass
class BrokerStatus:
    reachable: bool = False
    error: str = ""
    server_version: str = ""
    jetstream: Mapping[str, Any] = field(default_factory=dict)
    streams: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    dead_letters: int = 0
    dead_last_seq: int = 0
    new_dead_letters: int = 0
    fleet_daily_usd: float | None = None
    fleet_spent_today_usd: float | None = None
    fleet_spend_problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "error": self.error,
            "server_version": self.server_version,
            "jetstream": dict(self.jetstream),
            "streams": [{"name": n} | dict(s) for n, s in sorted(self.streams.items())],
            "dead_letters": self.dead_letters,
            "new_dead_letters": self.new_dead_letters,
            "fleet_daily_usd": self.fleet_daily_usd,
            "fleet_spent_today_usd": self.fleet_spent_today_usd,
            "fleet_spend_problem": self.fleet_spend_problem,
        }


@dataclass
class FleetStatus:
    workers: list[WorkerStatus]
    hosts: list[HostStatus]
    broker: BrokerStatus
    local: bool = False
    hosts_observed: bool = True

    def problems(self, fleet: Fleet, now: float) -> list[str]:
        return problems(self, fleet, now)

    def as_json(self, fleet: Fleet, now: float) -> dict[str, Any]:
        return {
            "version": VERSION,
            "at": round(now, 3),
            "local": self.local,
            "hosts_observed": self.hosts_observed,
            "workers": [w.as_json(now) for w in self.workers],
            "hosts": [h.as_json() for h in self.hosts],
            "broker": self.broker.as_json(),
            "problems": self.problems(fleet, now),
        }


def problems(status: FleetStatus, fleet: Fleet, now: float) -> list[str]:
    """Everything that needs a human, one line each, in a stable order."""
    found: list[str] = []
    if not status.broker.reachable:
        found.append(f"broker: not reachable ({status.broker.error})")
    for h in status.hosts:
        if not h.reachable:
            found.append(f"host {h.name}: not reachable ({h.error})")
        found += [f"host {h.name}: {u} {s}" for u, s in sorted(h.units.items()) if s != "active"]
    max_lag = fleet.status.max_lag
    for w in status.workers:
        if w.state == "not heartbeating":
            age = w.heartbeat_age(now)
            since = f" (last heard {age:.0f}s ago)" if age is not None else ""
            found.append(f"worker {w.worker_id}: not heartbeating{since}")
        if w.enabled and w.count("num_pending") > max_lag:
            found.append(
                f"worker {w.worker_id}: {w.count('num_pending')} tasks queued"
                f" (status.max_lag {max_lag})"
            )
        expires = w.creds_expires_at
        if w.enabled and expires is not None and expires - now < fleet.creds.expiry_warning:
            left = (expires - now) / 86400
            found.append(
                f"worker {w.worker_id}: credentials "
                + ("expired" if left <= 0 else f"expire in {left:.1f} days")
                + " (fleetctl creds rotate)"
            )
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    for w in status.workers:
        if w.spend_problem:
            found.append(
                f"worker {w.worker_id}: spend counter worker.{w.worker_id}.{day} "
                f"{w.spend_problem}: {NO_TASKS_TODAY}"
            )
    if status.broker.fleet_spend_problem:
        found.append(
            f"broker: the fleet's spend counter fleet.{day} {status.broker.fleet_spend_problem}:"
            f" {NO_TASKS_TODAY}"
        )
    if status.broker.new_dead_letters:
        found.append(
            f"broker: {status.broker.new_dead_letters} new dead letter(s) since the last look"
            " (fleetctl dead list)"
        )
    return found


# ---- reading the bus ------------------------------------------------------------------------


def workers_of(fleet: Fleet) -> list[WorkerStatus]:
    return [
        WorkerStatus(w.id, w.host, w.enabled, w.labels, daily_usd=w.daily_usd)
        for w in fleet.workers
    ]


async def _info(nc: Any, subject: str) -> dict[str, Any] | None:
    """A JetStream API answer; None when the thing does not exist."""
    answer = await bus_client.request(nc, subject)
    if "error" in answer:
        if answer["error"].get("code") == 404:
            return None
        raise bus_client.BusError(f"{subject}: {answer['error'].get('description')}")
    return answer


class BusView:
    """One admin connection: the heartbeats as they arrive, and looks at the bus on demand."""

    def __init__(self, nc: Any, fleet: Fleet, workers: list[WorkerStatus]) -> None:
        self.nc = nc
        self.fleet = fleet
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
        subject = f"{API}.DIRECT.GET.{n.spend_stream}.$KV.{n.spend_bucket}.{key}"
        try:
            reply = await self.nc.request(subject, b"", timeout=SPEND_TIMEOUT)
        except Exception:
            return None, None
        headers = reply.headers or {}
        status = headers.get("Status")
        if status == "404":
            return 0.0, None
        if status:  # an error, not a message: nothing known
            return None, None
        counter = spend.parse(reply.data, headers)
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
        for w in self.workers.values():
            durable = n.consumer(w.worker_id)
            w.consumer = await _info(self.nc, f"{API}.CONSUMER.INFO.{n.task_stream}.{durable}")
            w.deployed = w.consumer is not None and w.started_here
        account = await _info(self.nc, f"{API}.INFO") or {}
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
        ):
            info = await _info(self.nc, f"{API}.STREAM.INFO.{stream}")
            if info is None:
                continue
            state, config = info.get("state") or {}, info.get("config") or {}
            broker.streams[stream] = {
                "messages": state.get("messages", 0),
                "bytes": state.get("bytes", 0),
                "max_bytes": config.get("max_bytes"),
            }
            if stream == n.dead_stream:
                broker.dead_letters = int(state.get("messages", 0))
                broker.dead_last_seq = int(state.get("last_seq", 0))
        await self._spend(broker)
        server = getattr(self.nc, "_server_info", None) or {}
        broker.server_version = str(server.get("version", ""))
        broker.reachable = True


# ---- hosts, credentials and the last look ---------------------------------------------------


def observe_hosts(fleet: Fleet, options: Any) -> list[HostStatus]:
    """Each host reachable or not, and its units, from a read-only live plan's observation."""
    from fleetctl.reconcile.inputs import gather
    from fleetctl.reconcile.observation import live_plan
    from fleetctl.reconcile.plan.selection import Selection

    view = live_plan(fleet, gather(fleet), Selection(), options, lock=False)
    view.close()
    hosts = []
    for name, state in view.desired.hosts.items():
        if name in view.errors:
            hosts.append(HostStatus(name, False, view.errors[name]))
            continue
        seen = view.sessions[name].observed
        units: dict[str, str] = {}
        for unit in state.units:
            if not unit.enabled:
                continue
            if unit.name in seen.dead_units:
                units[unit.name] = seen.dead_units[unit.name]
            elif unit.key in seen.resources:
                units[unit.name] = "active"
            else:
                units[unit.name] = "not installed"
        hosts.append(HostStatus(name, True, units=units))
    return hosts


def creds_expiry(fleet: Fleet) -> dict[str, int | None]:
    """Each worker's credentials' expiry (Unix seconds) from the fleet's store, if it has one."""
    from fleetctl.identity import credentials, natsaccess

    authority = credentials.load(fleet)
    if authority is None:
        return {}
    return {
        r.worker: r.expires_at
        for r in natsaccess.credential_rows(authority)
        if r.worker is not None and not r.revoked
    }


LAST_LOOK = "status.json"


def last_dead_seq(state_dir: Any) -> int | None:
    """The dead-letter stream's last sequence at the last look from this machine."""
    try:
        data = json.loads((state_dir / LAST_LOOK).read_text())
    except (OSError, ValueError):
        return None
    seq = data.get("dead_last_seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) else None


def remember_look(state_dir: Any, broker: BrokerStatus) -> None:
    """Written only after a look that reached the broker; 0600 like the rest of the state."""
    import os

    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LAST_LOOK
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"version": 1, "dead_last_seq": broker.dead_last_seq}, f)
    tmp.replace(path)


def count_new_dead(broker: BrokerStatus, before: int | None) -> None:
    """Dead letters stored since the last look (every one kept, on the first look)."""
    if before is None or before > broker.dead_last_seq:  # first look, or a new stream
        broker.new_dead_letters = broker.dead_letters
    else:
        broker.new_dead_letters = broker.dead_last_seq - before


# ---- one look, or a live view ---------------------------------------------------------------


async def _open(endpoint: bus_client.Endpoint, status: FleetStatus, fleet: Fleet) -> BusView:
    nc = await bus_client.connect(endpoint)
    view = BusView(nc, fleet, status.workers)
    try:
        await view.listen()
        await view.ping_all()
        await view.look(status.broker)
    except BaseException:
        await nc.close()
        raise
    return view


async def look_once(endpoint: bus_client.Endpoint, status: FleetStatus, fleet: Fleet) -> None:
    view = await _open(endpoint, status, fleet)
    await view.nc.close()


async def follow(
    endpoint: bus_client.Endpoint,
    status: FleetStatus,
    fleet: Fleet,
    show: Any,
    *,
    every: float = 2.0,
    until: float | None = None,
) -> None:
    """Show the status, then again on each heartbeat and after each look at the bus (every
    `every` seconds: consumers and streams are not pushed). A worker not heard from for two
    heartbeats turns `not heartbeating`. Runs until cancelled (or `until`, monotonic)."""
    view = await _open(endpoint, status, fleet)
    try:
        show()
        last_look = time.monotonic()
        while until is None or time.monotonic() < until:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(view.changed.wait(), timeout=min(every, 1.0))
            view.changed.clear()
            now = time.time()
            for w in status.workers:
                if w.beat_at is not None and now - w.beat_at > STALE_AFTER:
                    w.beat = {**(w.beat or {}), "state": "stopped", "current_tasks": []}
                    w.beat_at = None
            if time.monotonic() - last_look >= every:
                await view.look(status.broker)
                last_look = time.monotonic()
            show()
    finally:
        await view.nc.close()
