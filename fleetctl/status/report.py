"""What `fleetctl status` shows, as data: each worker, host and the broker, the JSON
document (`VERSION`), and the problems `status --check` exits 1 on: a deployed worker not
heartbeating, tasks queued for a worker that is not running, a unit down, a backlog over
`status.max_lag`, dead letters since the last look, credentials expiring within
`creds.expiry_warning`, a spend counter that is corrupt or was reset today because it was
(poller/spend.py), a host whose repositories' disk is below the free-space floor the pollers
refuse new worktrees under. Pure."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.config.model import Fleet

VERSION = 1
# A poller that does not say its heartbeat interval (one from before heartbeats said it) runs
# with the default, HEARTBEAT_INTERVAL=5 (docs/poller.md).
DEFAULT_HEARTBEAT_INTERVAL = 5.0
MISSED_BEATS = (
    2  # --watch: a worker not heard from for this many of its intervals is not heartbeating
)
NOT_FAILED = ("completed", "cancelled")  # heartbeat counts that are not failures
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
    consumer_error: str | None = None  # a cluster's consumer that did not answer just now

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.beat is None or self.beat.get("state") == "stopped":
            return "not heartbeating" if self.deployed else "not deployed"
        if self.beat.get("draining") is True:
            return "draining"
        if self.paused_until is not None:
            return "paused"
        return "busy" if self.beat.get("current_tasks") else "idle"

    @property
    def paused_until(self) -> float | None:
        """Until when (Unix seconds) its heartbeat said it fetches nothing, if it did."""
        beat = self.beat or {}
        until, sent = beat.get("paused_until"), beat.get("ts")
        if not isinstance(until, int | float):
            return None
        return float(until) if not isinstance(sent, int | float) or until > sent else None

    def _beat(self, key: str, kind: type | tuple[type, ...]) -> Any:
        value = (self.beat or {}).get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    def heartbeat_age(self, now: float) -> float | None:
        """Seconds since the newest status message arrived, by this machine's clock (a
        worker's own clock may be off); its `ts` when the arrival is not known."""
        if self.beat is None:
            return None
        sent = self.beat.get("ts")
        at = self.beat_at if self.beat_at is not None else sent
        return round(max(0.0, now - (at if isinstance(at, int | float) else now)), 1)

    @property
    def heartbeat_interval(self) -> float:
        """The seconds between its heartbeats, as they say (older pollers: the default)."""
        said = self._beat("heartbeat_interval_s", (int, float))
        return float(said) if said is not None and said > 0 else DEFAULT_HEARTBEAT_INTERVAL

    def silent(self, now: float) -> bool:
        """Not heard from for MISSED_BEATS of its own heartbeat intervals (`status --watch`:
        then it is not heartbeating). The same age `heartbeat_age_s` reports, rounded."""
        age = self.heartbeat_age(now)
        return age is not None and age > MISSED_BEATS * self.heartbeat_interval

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
            "heartbeat_interval_s": self.heartbeat_interval if self.beat is not None else None,
            "current_tasks": tasks,
            "in_flight": [t for t in beat.get("in_flight") or () if isinstance(t, dict)],
            "draining": beat.get("draining") is True,
            "drain_until": self._beat("drain_until", (int, float)),
            "paused_until": self.paused_until,
            "pause_reason": self._beat("pause_reason", str) if self.paused_until else None,
            "version": beat.get("poller_version"),
            "uptime_s": beat.get("uptime_s"),
            "pending": self.count("num_pending"),
            "ack_pending": self.count("num_ack_pending"),
            "redelivered": self.count("num_redelivered"),
            "completed": counts.get("completed", 0),
            "failed": sum(
                v for k, v in counts.items() if k not in NOT_FAILED and isinstance(v, int)
            ),
            "labels": dict(self.labels),
            "creds_expires_at": self.creds_expires_at,
            "daily_usd": self.daily_usd,
            "spent_today_usd": self.spent_today_usd,
            "spend_problem": self.spend_problem,
        }


@dataclass(frozen=True)
class RepoDisk:
    """The disk a host's repositories use: bytes under each path (its mirrors' directory,
    each worker's worktrees; None: not there yet), and the free bytes where they are."""

    used: Mapping[str, int | None]
    free_bytes: int | None
    floor_bytes: int  # below it, the pollers refuse new worktrees

    @property
    def used_bytes(self) -> int:
        return sum(v for v in self.used.values() if v is not None)

    @property
    def low(self) -> bool:
        return self.free_bytes is not None and self.free_bytes < self.floor_bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "used_bytes": self.used_bytes,
            "free_bytes": self.free_bytes,
            "floor_bytes": self.floor_bytes,
            "paths": [{"path": p, "bytes": b} for p, b in self.used.items()],
        }


@dataclass
class HostStatus:
    name: str
    reachable: bool
    error: str = ""
    units: dict[str, str] = field(default_factory=dict)  # unit -> "active" or why it is not
    repos: RepoDisk | None = None  # None: no repository here (or not observed)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "reachable": self.reachable, "error": self.error} | {
            "units": [{"unit": u, "state": s} for u, s in sorted(self.units.items())],
            "repos": self.repos.as_json() if self.repos else None,
        }


@dataclass
class ServerStatus:
    """One broker of a cluster, as fleet-sys saw it (down: it did not answer)."""

    name: str
    up: bool = False
    version: str = ""
    routes: list[str] = field(default_factory=list)  # the brokers it has routes to
    healthy: bool = False
    health: str = ""  # why not, as nats-server says

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
    # A cluster: each broker, the meta leader, and why they could not be read ("" if read).
    servers: list[ServerStatus] = field(default_factory=list)
    meta_leader: str | None = None
    cluster_error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "servers": [s.as_json() for s in self.servers],
            "meta_leader": self.meta_leader,
            "cluster_error": self.cluster_error,
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

    def mark_silent(self, now: float) -> None:
        """`status --watch`: each worker not heard from for MISSED_BEATS of its own heartbeat
        intervals turns `not heartbeating` (its newest heartbeat, as stopped) until it is
        heard from again."""
        for w in self.workers:
            if w.beat is not None and w.beat.get("state") != "stopped" and w.silent(now):
                w.beat = {**w.beat, "state": "stopped", "current_tasks": []}

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
    elif status.broker.servers or status.broker.cluster_error:  # a cluster's brokers
        found += cluster_problems(status.broker, fleet.status.max_replica_lag)
    for h in status.hosts:
        if not h.reachable:
            found.append(f"host {h.name}: not reachable ({h.error})")
        found += [f"host {h.name}: {u} {s}" for u, s in sorted(h.units.items()) if s != "active"]
        if h.repos is not None and h.repos.low:
            found.append(
                f"host {h.name}: {_gib(h.repos.free_bytes)} free for the repositories, below "
                f"the {_gib(h.repos.floor_bytes)} floor: its workers refuse new worktrees "
                "(free disk space; finished worktrees go after `retain`)"
            )
    max_lag = fleet.status.max_lag
    for w in status.workers:
        if w.state == "not heartbeating":
            age = w.heartbeat_age(now)
            since = f" (last heard {age:.0f}s ago)" if age is not None else ""
            found.append(f"worker {w.worker_id}: not heartbeating{since}")
        if w.enabled and w.consumer_error:
            found.append(f"worker {w.worker_id}: its consumer did not answer ({w.consumer_error})")
        queued = w.count("num_pending")
        if w.enabled and queued and w.state in ("not deployed", "not heartbeating"):
            why = "not started by fleetctl up" if not w.started_here else w.state
            found.append(
                f"worker {w.worker_id}: {queued} task{'s' if queued > 1 else ''} queued, "
                f"but it is not running ({why})"
            )
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


def _gib(n: int | None) -> str:
    return f"{(n or 0) / 1024**3:.2f} GiB"


def cluster_problems(broker: BrokerStatus, max_lag: int) -> list[str]:
    """A broker down or unhealthy, no meta leader, a stream without a leader, or a stream's
    copy lagging by more than `max_lag` operations. A copy on a broker that does not answer
    is named only by its lag: a frozen or cut-off broker's leaders count how far it fell
    behind (what it must catch up on), while its copies being not current is the broker's
    problem, said once."""
    if broker.cluster_error:
        return [f"cluster: not read ({broker.cluster_error})"]
    found = []
    up = {s.name for s in broker.servers if s.up}
    for s in broker.servers:
        if not s.up:
            found.append(f"broker {s.name}: down (it does not answer)")
        elif not s.healthy:
            found.append(f"broker {s.name}: not healthy ({s.health})")
    if up and not broker.meta_leader:
        found.append("cluster: no JetStream meta leader (fewer than a majority of brokers up?)")
    for name, stream in sorted(broker.streams.items()):
        leader = stream.get("leader")
        if stream.get("error"):
            found.append(f"stream {name}: did not answer ({stream['error']})")
            continue
        if not leader:
            found.append(f"stream {name}: no leader")
            continue
        for copy in stream.get("replicas") or []:
            lag, where = copy.get("lag") or 0, copy.get("name")
            running = where in up
            if lag > max_lag or (running and not copy.get("current")):
                behind = f"{lag} operations behind" if lag else "not current"
                down = "" if running else " (down)"
                found.append(
                    f"stream {name}: its copy on {where}{down} is {behind} its leader {leader} "
                    f"(status.max_replica_lag {max_lag})"
                )
    return found


def workers_of(fleet: Fleet) -> list[WorkerStatus]:
    return [
        WorkerStatus(w.id, w.host, w.enabled, w.labels, daily_usd=w.daily_usd)
        for w in fleet.workers
    ]
