"""The local fleet's supervisor: one process that owns the nats-server and every poller.

It starts the broker and the bus, then the workers that can run here, waits until each has
sent a heartbeat, records the fleet in up.json, and keeps the pollers running. SIGHUP applies
fleet.yaml again (start new workers, restart changed ones, stop removed ones); SIGTERM or
SIGINT stops everything. A poller that stops (a reload that changes or removes its worker,
or the end) drains as its unit would: SIGTERM, its worker's drain_timeout for the running
tasks to finish, then they are handed back; SIGKILL 30 s after that. Pollers stop side by
side, and the others keep running meanwhile; `draining` in supervisor.json says who, with
how many tasks, until when.

Run in the foreground by `fleetctl up`, or detached (`python -m fleetctl.local.supervisor`)
by `fleetctl up --detach`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.bus.client import BusError
from fleetctl.bus.localfleet import up_record
from fleetctl.config.errors import ConfigError
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.identity import natsaccess
from fleetctl.local import repos, server
from fleetctl.local.children import Child
from fleetctl.local.console import Console
from fleetctl.local.heartbeats import Heartbeats
from fleetctl.local.state import StateDir, held_lock, write_json
from fleetctl.local.workers import Launch, launch, missing
from nsc.errors import NscError

READY_TIMEOUT = 60.0
TICK = 0.2
BROKER_RESTART_SEC = 5.0  # the broker unit's RestartSec=
# What can go wrong setting up the local broker and bus, reported in one line each.
FAILURES = (server.LocalServerError, BusError, NscError, OSError)


def _described(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or e}: {e.filename}"
    return str(e)


@dataclass(frozen=True)
class Options:
    fleet_path: Path
    servers_path: Path
    state: StateDir
    only: tuple[str, ...] = ()
    # Seconds from SIGTERM to SIGKILL for every poller; None: each its unit's TimeoutStopSec.
    grace: float | None = None
    ready_timeout: float = READY_TIMEOUT
    brokers: int = 1  # `up --brokers 3`: a NATS cluster of three on loopback


@dataclass
class Outcome:
    """What one (re)load did, as `up` reports it."""

    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    not_started: list[dict[str, str]] = field(default_factory=list)
    not_ready: list[dict[str, str]] = field(default_factory=list)
    bus_changes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Supervisor:
    def __init__(
        self, options: Options, on_ready: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.o = options
        self.on_ready = on_ready
        self.console = Console()
        self.children: dict[str, Child] = {}
        self.fleet: Fleet | None = None
        self.procs: dict[str, Any] = {}  # each local nats-server, by name
        self.port = (
            server.free_ports(options.brokers) if options.brokers > 1 else server.free_port()
        )
        self.cluster_ports = (
            [server.free_port() for _ in range(options.brokers)] if options.brokers > 1 else []
        )
        self.brokers: list[server.LocalBroker] = []
        self.generation = 0
        self.heartbeats: Heartbeats | None = None
        self.endpoint: Any = None
        self.creds: server.LocalCreds | None = None
        self._stop = False
        self._reload = False
        self._dead_since: dict[str, float] = {}
        self._published: dict[str, Any] = {}
        self.ready = False
        self.failure: str | None = None

    # ---- life cycle ---------------------------------------------------------------------
    def run(self) -> int:
        with held_lock(self.o.state) as mine:
            if not mine:
                print("fleetctl up: this fleet is already running here", file=sys.stderr)
                return 1
            self._status(state="starting")
            signal.signal(signal.SIGTERM, self._on_stop)
            signal.signal(signal.SIGINT, self._on_stop)
            signal.signal(signal.SIGHUP, self._on_reload)
            try:
                return self._serve()
            finally:
                self._shutdown()

    def _fail(self, error: str) -> int:
        self.failure = error
        self._status(state="failed", error=error)
        return 1

    def _on_stop(self, *_: object) -> None:
        self._stop = True

    def _on_reload(self, *_: object) -> None:
        self._reload = True

    def _serve(self) -> int:
        try:
            fleet = self._load()
        except ConfigError as e:
            return self._fail(f"{len(e.problems)} problems in fleet.yaml")
        try:
            local = self._local(fleet)
            self.creds = server.issue_creds(local, [w.id for w in local.workers if w.enabled])
            self.brokers = server.local_brokers(local, self.o.state, self.cluster_ports)
            self.procs = server.start(local, self.brokers, self.creds.auth_config)
            self.endpoint = server.admin_endpoint(local, self.creds)
            changes = server.apply_bus(local, self.endpoint)
        except FAILURES as e:
            return self._fail(_described(e))
        self.heartbeats = Heartbeats(self.endpoint, local.nats.subject_prefix)
        self.heartbeats.start()
        outcome = self._converge(local)
        outcome.bus_changes = [f"{c.action} {c.kind} {c.name}" for c in changes]
        self.ready = True
        status = self._publish(local, outcome)
        if self.on_ready is not None:
            self.on_ready(status)
        while not self._stop:
            if self._reload:
                self._reload = False
                self._apply_reload()
            now = time.monotonic()
            for child in list(self.children.values()):
                child.poll(now)
            self._restart_brokers(local)
            time.sleep(TICK)
        return 0

    def _local(self, fleet: Fleet) -> Fleet:
        return server.local_fleet(fleet, self.o.state, self.port, self.o.brokers)

    def _restart_brokers(self, local: Fleet) -> None:
        """A local nats-server that died (`kill -9` to try the cluster) is started again after
        BROKER_RESTART_SEC, as systemd's Restart= would on a host."""
        assert self.creds is not None
        now = time.monotonic()
        for name, proc in self.procs.items():
            if proc.poll() is not None and name not in self._dead_since:
                self._dead_since[name] = now
                self.console.say(name, f"exited with {proc.returncode}; starting it again")
        due = [n for n, t in self._dead_since.items() if now - t >= BROKER_RESTART_SEC]
        if due:
            fleet = self.fleet or local
            brokers = [b for b in self.brokers if b.name in due]
            server.restart_dead(fleet, brokers, self.procs, self.creds.auth_config)
            for name in due:
                del self._dead_since[name]
            if self._published:
                self._status(**{**self._published, "brokers": self._broker_pids()})

    def _load(self) -> Fleet:
        fleet = load_fleet(self.o.fleet_path, self.o.servers_path)
        self.console.width = max([12, *(len(w.id) for w in fleet.workers)])
        return fleet

    # ---- converging on the fleet ----------------------------------------------------------
    def _wanted(self, local: Fleet, outcome: Outcome) -> dict[str, Launch]:
        assert self.creds is not None
        ready = []
        for worker in local.workers:
            if not worker.enabled or (self.o.only and worker.id not in self.o.only):
                continue
            reason = missing(worker)
            if reason is not None:
                outcome.not_started.append({"worker_id": worker.id, "reason": reason})
                continue
            ready.append(worker)
        state = self.o.state
        failed = repos.prepare(local, {n for w in ready for n in w.repos}, state)
        wanted = {}
        for worker in ready:
            broken = [n for n in worker.repos if n in failed]
            if broken:
                why = "; ".join(f"repository {n}: {failed[n]}" for n in broken)
                outcome.not_started.append({"worker_id": worker.id, "reason": why})
                continue
            file = repos.write_repos_file(local, worker, state) if worker.repos else None
            base = state.work_base(worker.id)
            creds = self.creds.workers[worker.id]
            wanted[worker.id] = launch(local, worker, base, creds, file)
        return wanted

    def _converge(self, local: Fleet) -> Outcome:
        """Start, restart and stop pollers until they match the fleet; wait for heartbeats.
        New workers start at once; a changed one starts again once its old poller drained."""
        outcome = Outcome()
        wanted = self._wanted(local, outcome)
        leaving = [w for w in self.children if w not in wanted]
        outcome.stopped += leaving
        changed = [
            w
            for w, spec in wanted.items()
            if w in self.children and self.children[w].launch.fingerprint != spec.fingerprint
        ]
        outcome.restarted += changed
        outcome.started += [w for w in wanted if w not in self.children]
        fresh = [self._start(wanted[w]) for w in outcome.started]
        self._drain([self.children.pop(w) for w in leaving + changed])
        fresh += [self._start(wanted[w]) for w in changed]
        self._wait_ready(fresh, outcome)
        self.fleet = local
        return outcome

    def _start(self, spec: Launch) -> Child:
        child = Child(spec, self.o.state.log(spec.worker_id), self.console.say)
        child.start()
        self.children[spec.worker_id] = child
        return child

    def _drain(self, stopping: list[Child]) -> None:
        """SIGTERM each, side by side; until every one has exited (or was killed at its
        deadline), keep the other pollers running and say who drains what."""
        if not stopping:
            return
        for child in stopping:
            child.terminate(self.o.grace)
        if self.failure is None:
            self._status(state="draining", draining=self._draining(stopping))
        while True:
            now = time.monotonic()
            stopping = [c for c in stopping if not c.stopped(now)]
            if not stopping:
                return
            for child in self.children.values():
                child.poll(now)
            time.sleep(TICK)

    def _draining(self, stopping: list[Child]) -> list[dict[str, Any]]:
        """Who drains: each worker's running tasks (its last heartbeat) and its deadline."""
        rows = []
        for child in stopping:
            beat = self.heartbeats.last(child.worker_id) if self.heartbeats else None
            tasks = (beat or {}).get("current_tasks")
            left = (child.stop_deadline or time.monotonic()) - time.monotonic()
            rows.append(
                {
                    "worker_id": child.worker_id,
                    "tasks": len(tasks) if isinstance(tasks, list) else None,
                    "until": round(time.time() + max(left, 0.0), 3),
                }
            )
        return rows

    def _wait_ready(self, fresh: list[Child], outcome: Outcome) -> None:
        assert self.heartbeats is not None
        deadline = time.monotonic() + self.o.ready_timeout
        waiting = {c.worker_id: c for c in fresh}
        since = {c.worker_id: c.started_at for c in fresh}
        while waiting and time.monotonic() < deadline and not self._stop:
            now = time.monotonic()
            for wid, child in list(waiting.items()):
                child.poll(now)
                if self.heartbeats.seen_since(wid, since[wid]):
                    del waiting[wid]
            time.sleep(0.05)
        for wid, child in waiting.items():
            reason = f"no heartbeat within {self.o.ready_timeout:.0f} s"
            if child.restarts:
                reason += f" (exited {child.restarts} times, last code {child.exits[-1][1]})"
            outcome.not_ready.append(
                {"worker_id": wid, "reason": f"{reason}; see {child.log_path}"}
            )

    def _apply_reload(self) -> None:
        self.generation += 1
        try:
            fleet = self._load()
        except ConfigError as e:
            self._status(
                state="running", error=f"fleet.yaml not applied: {len(e.problems)} problems"
            )
            return
        assert self.creds is not None and self.endpoint is not None
        local = self._local(fleet)
        enabled = [w.id for w in local.workers if w.enabled]
        try:
            self.creds = server.issue_creds(local, enabled)
            server.reload(local, self.brokers, self.procs, self.creds.auth_config)
            changes = server.apply_bus(local, self.endpoint)
        except FAILURES as e:  # the fleet keeps running as it was
            self._status(state="running", error=f"fleet.yaml not applied: {_described(e)}")
            return
        outcome = self._converge(local)
        outcome.bus_changes = [f"{c.action} {c.kind} {c.name}" for c in changes]
        self._publish(local, outcome)

    # ---- what others read -----------------------------------------------------------------
    def _publish(self, local: Fleet, outcome: Outcome) -> dict[str, Any]:
        assert self.creds is not None
        url = server.bus_url(local)
        creds = {
            natsaccess.PUBLISHER_USER: str(self.creds.publisher),
            natsaccess.ADMIN_USER: str(self.creds.admin),
        }
        names = [b.name for b in self.brokers]
        if len(names) > 1 and self.creds.system is not None:
            creds[natsaccess.SYSTEM_USER] = str(self.creds.system)
        if self.creds.dashboard is not None:
            creds[natsaccess.DASHBOARD_USER] = str(self.creds.dashboard)
        record = up_record(self.o.fleet_path, os.getpid(), url, creds, sorted(self.children), names)
        write_json(self.o.state.up_json, record)
        self._published = {
            "state": "running",
            "nats_url": url,
            "brokers": self._broker_pids(),
            "outcome": outcome.as_json(),
        }
        return self._status(**self._published)

    def _broker_pids(self) -> list[dict[str, Any]]:
        return [
            {"name": b.name, "port": b.port, "pid": self.procs[b.name].pid} for b in self.brokers
        ]

    def _grace(self) -> float:
        """The longest a stop may take: `down` waits this long (and a little more)."""
        if self.o.grace is not None:
            return self.o.grace
        stops = [c.launch.stop_timeout for c in self.children.values()]
        return max(stops, default=30.0)

    def _status(self, **fields: Any) -> dict[str, Any]:
        record = {
            "pid": os.getpid(),
            "generation": self.generation,
            "fleet": str(self.o.fleet_path.resolve()),
            "state_dir": str(self.o.state.root),
            "grace": self._grace(),
            "ready_timeout": self.o.ready_timeout,
            **fields,
        }
        write_json(self.o.state.supervisor_json, record)
        return record

    def _shutdown(self) -> None:
        self.o.state.up_json.unlink(missing_ok=True)
        children, self.children = list(self.children.values()), {}
        self._drain(children)
        if self.heartbeats is not None:
            self.heartbeats.stop()
        server.stop(self.procs)
        if self.failure is None:
            self._status(state="stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetctl.local.supervisor")
    parser.add_argument("--fleet", type=Path, required=True)
    parser.add_argument("--servers", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--grace", type=float, default=None)
    parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT)
    parser.add_argument("--brokers", type=int, default=1)
    args = parser.parse_args(argv)
    state = StateDir(args.state_dir)
    only = tuple(args.only)
    options = Options(
        args.fleet, args.servers, state, only, args.grace, args.ready_timeout, args.brokers
    )
    return Supervisor(options).run()


if __name__ == "__main__":
    sys.exit(main())
