"""The local fleet's supervisor: one process that owns the nats-server and every poller.

It starts the broker and the bus, then the workers that can run here, waits until each has
sent a heartbeat, records the fleet in up.json, and keeps the pollers running. SIGHUP applies
fleet.yaml again (start new workers, restart changed ones, stop removed ones); SIGTERM or
SIGINT stops everything: running tasks get the unit's grace period to finish.

Run in the foreground by `fleetctl up`, or detached (`python -m fleetctl.local.supervisor`)
by `fleetctl up --detach`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
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
from fleetctl.local import server
from fleetctl.local.children import Child
from fleetctl.local.heartbeats import Heartbeats
from fleetctl.local.state import StateDir, held_lock, write_json
from fleetctl.local.workers import Launch, launch, missing
from fleetctl.reconcile.desired.workers import POLLER_STOP_TIMEOUT
from nsc.errors import NscError

READY_TIMEOUT = 60.0
TICK = 0.2
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
    grace: float = POLLER_STOP_TIMEOUT
    ready_timeout: float = READY_TIMEOUT


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


class Console:
    """Every line of every worker, prefixed with its id (stdout: the terminal, or the
    supervisor's log when detached)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.width = 12

    def say(self, who: str, line: str) -> None:
        with self._lock:
            sys.stdout.write(f"{who:<{self.width}} | {line}\n")
            sys.stdout.flush()


class Supervisor:
    def __init__(
        self, options: Options, on_ready: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.o = options
        self.on_ready = on_ready
        self.console = Console()
        self.children: dict[str, Child] = {}
        self.fleet: Fleet | None = None
        self.server_proc: Any = None
        self.port = server.free_port()
        self.generation = 0
        self.heartbeats: Heartbeats | None = None
        self.endpoint: Any = None
        self.creds: server.LocalCreds | None = None
        self._stop = False
        self._reload = False
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
            local = server.local_fleet(fleet, self.o.state, self.port)
            self.creds = server.issue_creds(local, [w.id for w in local.workers if w.enabled])
            self.server_proc = server.start(local, self.o.state, self.creds.auth_config)
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
            time.sleep(TICK)
        return 0

    def _load(self) -> Fleet:
        fleet = load_fleet(self.o.fleet_path, self.o.servers_path)
        self.console.width = max([12, *(len(w.id) for w in fleet.workers)])
        return fleet

    # ---- converging on the fleet ----------------------------------------------------------
    def _wanted(self, local: Fleet, outcome: Outcome) -> dict[str, Launch]:
        assert self.creds is not None
        wanted = {}
        for worker in local.workers:
            if not worker.enabled or (self.o.only and worker.id not in self.o.only):
                continue
            reason = missing(worker)
            if reason is not None:
                outcome.not_started.append({"worker_id": worker.id, "reason": reason})
                continue
            base = self.o.state.work_base(worker.id)
            wanted[worker.id] = launch(local, worker, base, self.creds.workers[worker.id])
        return wanted

    def _converge(self, local: Fleet) -> Outcome:
        """Start, restart and stop pollers until they match the fleet; wait for heartbeats."""
        outcome = Outcome()
        wanted = self._wanted(local, outcome)
        for wid in [w for w in self.children if w not in wanted]:
            self.children.pop(wid).stop(self.o.grace)
            outcome.stopped.append(wid)
        fresh: list[Child] = []
        for wid, spec in wanted.items():
            old = self.children.get(wid)
            if old is not None and old.launch.fingerprint == spec.fingerprint:
                continue
            if old is not None:
                old.stop(self.o.grace)
                outcome.restarted.append(wid)
            else:
                outcome.started.append(wid)
            child = Child(spec, self.o.state.log(wid), self.console.say)
            child.start()
            self.children[wid] = child
            fresh.append(child)
        self._wait_ready(fresh, outcome)
        self.fleet = local
        return outcome

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
        local = server.local_fleet(fleet, self.o.state, self.port)
        enabled = [w.id for w in local.workers if w.enabled]
        try:
            self.creds = server.issue_creds(local, enabled)
            server.reload(local, self.o.state, self.server_proc, self.creds.auth_config)
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
        url = f"nats://127.0.0.1:{local.nats.port}"
        creds = {
            natsaccess.PUBLISHER_USER: str(self.creds.publisher),
            natsaccess.ADMIN_USER: str(self.creds.admin),
        }
        record = up_record(self.o.fleet_path, os.getpid(), url, creds, sorted(self.children))
        write_json(self.o.state.up_json, record)
        return self._status(state="running", nats_url=url, outcome=outcome.as_json())

    def _status(self, **fields: Any) -> dict[str, Any]:
        record = {
            "pid": os.getpid(),
            "generation": self.generation,
            "fleet": str(self.o.fleet_path.resolve()),
            "state_dir": str(self.o.state.root),
            "grace": self.o.grace,
            "ready_timeout": self.o.ready_timeout,
            **fields,
        }
        write_json(self.o.state.supervisor_json, record)
        return record

    def _shutdown(self) -> None:
        self.o.state.up_json.unlink(missing_ok=True)
        deadline = time.monotonic() + self.o.grace
        for child in self.children.values():
            child.terminate()
        for child in self.children.values():
            child.wait_stopped(deadline)
        if self.heartbeats is not None:
            self.heartbeats.stop()
        if self.server_proc is not None:
            server.stop(self.server_proc)
        if self.failure is None:
            self._status(state="stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetctl.local.supervisor")
    parser.add_argument("--fleet", type=Path, required=True)
    parser.add_argument("--servers", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--grace", type=float, default=POLLER_STOP_TIMEOUT)
    parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT)
    args = parser.parse_args(argv)
    state = StateDir(args.state_dir)
    only = tuple(args.only)
    options = Options(args.fleet, args.servers, state, only, args.grace, args.ready_timeout)
    return Supervisor(options).run()


if __name__ == "__main__":
    sys.exit(main())
