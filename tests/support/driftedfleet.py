"""The example fleet as a live plan of stand-in hosts (tests/support/fakehosts.py) that
drifted: the broker's nats-server unit file and each worker host's tunnel known_hosts differ
from what the fleet wants, so each host's program updates the file and restarts the unit.
For tests of the rollout without SSH or root."""

from __future__ import annotations

import dataclasses
from typing import Any

from fleetctl import layout
from fleetctl.identity.tunnelkeys import TunnelKey
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.desired.state import FleetState
from fleetctl.reconcile.facts import JOURNAL, MANIFEST, ObservedBus, ObservedHost
from fleetctl.reconcile.inputs import Inputs
from fleetctl.reconcile.observation import LiveView
from fleetctl.reconcile.plan.changes import fingerprint
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.sessions import Options, Session
from tests.support.example import example_fleet
from tests.support.fakehosts import PYTHON, FakeHost, Log, agent_answer, converged

BROKER, NODE1, NODE2 = "broker-host", "worker-node-1", "worker-node-2"
INPUTS = Inputs(
    tunnel_keys={h: TunnelKey(h, b"key", f"ssh-ed25519 AAAA{h} x") for h in (NODE1, NODE2)},
    broker_keys={BROKER: "ssh-ed25519 AAAAbroker"},
)
NATS_UNIT_FILE = layout.unit_path(layout.NATS_UNIT)
KNOWN_HOSTS = "/etc/fleet/tunnel/known_hosts"
TUNNEL = layout.TUNNEL_UNIT
# What each host's program does, as the stand-in agent saw it (fakehosts._said).
KEEP = "begin_previous"  # every program keeps the previous version first
CONFIRM = ("apply", "confirm_previous")  # and is confirmed once its host passed its checks
RESTORE = ("apply", "restore_previous")  # or rolled back
BROKER_PROGRAM = (
    "apply",
    KEEP,
    f"file {JOURNAL}",
    f"file {NATS_UNIT_FILE}",
    "systemctl daemon-reload",
    f"systemctl restart {layout.NATS_UNIT}",
    f"file {MANIFEST}",
    f"remove_file {JOURNAL}",
)
NODE_PROGRAM = (
    "apply",
    KEEP,
    f"file {JOURNAL}",
    f"file {KNOWN_HOSTS}",
    f"systemctl restart {TUNNEL}",
    f"file {MANIFEST}",
    f"remove_file {JOURNAL}",
)


def drifted(observed: ObservedHost, path: str, unit: str) -> ObservedHost:
    """`path` is not what the fleet wants, and `unit` was last started with that content:
    the plan updates the file and restarts the unit."""
    resources = dict(observed.resources)
    resources[f"file {path}"] = {**resources[f"file {path}"], "sha256": "0" * 64}
    inputs = {k: dict(v) for k, v in observed.unit_inputs.items()}
    inputs[unit][path] = "0" * 64
    return dataclasses.replace(observed, resources=resources, unit_inputs=inputs)


def converged_bus(desired: FleetState) -> ObservedBus:
    resources = {r.key: fingerprint(r) for r, _ in desired.bus.resources()}
    return ObservedBus(resources=resources, managed=frozenset(resources))


def live_view(
    hosts: dict[str, FakeHost],
    *,
    bus: ObservedBus | None = None,
    errors: dict[str, str] | None = None,
    settle: float = 0.0,
    parallel: int = 1,
) -> LiveView:
    """A live plan as observation makes it, of stand-in hosts that drifted: the broker's
    nats-server unit file, each worker host's tunnel known_hosts."""
    fleet = example_fleet()
    desired = desired_state(fleet, INPUTS)
    drift = {BROKER: (NATS_UNIT_FILE, layout.NATS_UNIT), NODE1: (KNOWN_HOSTS, TUNNEL)}
    drift[NODE2] = drift[NODE1]
    observed = {
        name: drifted(converged(desired.hosts[name]), *drift[name])
        for name in hosts
        if name not in (errors or {})
    }
    seen_bus = converged_bus(desired) if bus is None else bus
    plan = make_plan(
        desired,
        observed,
        bus=seen_bus,
        selection=Selection(),
        revision=fleet.revision,
        errors=errors,
    )
    sessions = {
        name: Session(fleet.host(name), hosts[name], raw={"python": PYTHON}, observed=seen)
        for name, seen in observed.items()
    }
    options = Options(settle=settle, parallel=parallel)
    return LiveView(
        fleet, INPUTS, desired, sessions, errors or {}, seen_bus, plan, options, Selection()
    )


def stand_ins(log: Log, **each: dict[str, Any]) -> dict[str, FakeHost]:
    names = {"broker": BROKER, "node1": NODE1, "node2": NODE2}
    return {names[k]: FakeHost(names[k], log, **each.get(k, {})) for k in names}


def observed_stand_ins(log: Log, bus_port: int | None = None) -> dict[str, FakeHost]:
    """Every host of the example fleet, its agent answering as right after an apply (for
    live plans: fleetctl/reconcile/observation.py); the broker's bus forward leads to
    `bus_port` (None: the forward fails)."""
    desired = desired_state(example_fleet(), INPUTS)
    hosts = {
        name: FakeHost(name, log, facts=agent_answer(converged(state)))
        for name, state in desired.hosts.items()
    }
    hosts[BROKER].bus_port = bus_port
    return hosts
