"""A broker and N worker hosts (`node-1`...), one command worker each (`w1`...), whose
credentials were all renewed: each worker host's program writes its worker's new creds and
restarts the worker.
As a live plan of stand-in hosts (tests/support/fakehosts.py), for tests of the rollout's
batches, health gates and rollbacks without SSH or root; the bus is a stand-in too
(`Bus`: what a ping would answer, pure data)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetctl.config.model import Fleet, Rollout
from fleetctl.identity.tunnelkeys import TunnelKey
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import Inputs, Versions
from fleetctl.reconcile.observation import LiveView
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.sessions import Options, Session
from tests.support.driftedfleet import converged_bus
from tests.support.example import example_fleet
from tests.support.fakehosts import PYTHON, FakeHost, Log, converged

BROKER = "broker-host"
POLLER = "0.1.0+aaa"


def node(i: int) -> str:
    return f"node-{i}"


def rolling_fleet(n: int, rollout: Rollout | None = None) -> Fleet:
    base = example_fleet()
    worker_host = next(h for h in base.hosts if h.is_worker_host)
    nodes = tuple(
        dataclasses.replace(worker_host, name=node(i), address=f"192.0.2.{20 + i}")
        for i in range(1, n + 1)
    )
    command = next(w for w in base.workers if w.backend == "command")
    workers = tuple(
        dataclasses.replace(command, id=f"w{i}", host=node(i), work_base=f"/var/lib/fleet/w{i}")
        for i in range(1, n + 1)
    )
    return dataclasses.replace(
        base,
        hosts=(base.broker, *nodes),
        workers=workers,
        routes={},
        rollout=rollout or Rollout(),
    )


def creds_path(worker: str) -> str:
    return f"/etc/fleet/creds/{worker}.creds"


def inputs(fleet: Fleet, creds: str) -> Inputs:
    nodes = [h.name for h in fleet.hosts if h.is_worker_host]
    return Inputs(
        creds={w.id: f"{creds} creds of {w.id}".encode() for w in fleet.workers},
        versions=Versions(POLLER, "nats-server: v2.15.1"),
        tunnel_keys={h: TunnelKey(h, b"key", f"ssh-ed25519 AAAA{h} x") for h in nodes},
        broker_keys={fleet.broker.name: "ssh-ed25519 AAAAbroker"},
    )


def live_view(
    fleet: Fleet, hosts: Mapping[str, FakeHost], *, settle: float = 0.0, parallel: int = 1
) -> LiveView:
    """Every host observed as an apply with the old creds left it; the plan brings the new."""
    desired = desired_state(fleet, inputs(fleet, "new"))
    before = desired_state(fleet, inputs(fleet, "old"))
    observed = {name: converged(before.hosts[name]) for name in hosts}
    bus = converged_bus(desired)
    plan = make_plan(desired, observed, bus=bus, selection=Selection(), revision=fleet.revision)
    sessions = {
        name: Session(fleet.host(name), hosts[name], raw={"python": PYTHON}, observed=seen)
        for name, seen in observed.items()
    }
    options = Options(settle=settle, parallel=parallel)
    return LiveView(
        fleet, inputs(fleet, "new"), desired, sessions, {}, bus, plan, options, Selection()
    )


def stand_ins(fleet: Fleet, log: Log, **each: dict[str, Any]) -> dict[str, FakeHost]:
    """A stand-in per host; `each` by host name (dashes as underscores) sets its fields."""
    return {
        h.name: FakeHost(h.name, log, **each.get(h.name.replace("-", "_"), {})) for h in fleet.hosts
    }


@dataclass
class Bus:
    """The bus as the rollout's gate sees it (fleetctl/reconcile/gate.Workers): each
    worker's status now (`status`), and why a worker fails the gate (`unhealthy`). Records
    what it was asked."""

    log: Log
    status: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    unhealthy: Mapping[str, str] = field(default_factory=dict)
    closed: bool = False

    def now(self, workers: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        self.log.add("bus", "status of", *workers)
        return {w: self.status[w] for w in workers if w in self.status}

    def settled(
        self, workers: Sequence[str], version: str | None, settle: float, wait: float
    ) -> dict[str, str]:
        self.log.add("bus", "gate", *workers, f"version {version}", f"settle {settle:g}")
        return {w: self.unhealthy[w] for w in workers if w in self.unhealthy}

    def close(self) -> None:
        self.closed = True
