"""A broker gets no nats-server it cannot run: the plan leaves out a broker whose CPU is
not the binary's (fleetctl/reconcile/brokerfit.py), and apply, when its plan did not check,
refuses before anything reaches the host. Stand-in hosts (tests/support/fakehosts.py);
the binary is the real one ./dev installs, for this machine's CPU, and the broker says it
is another."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from fleetctl.artifacts import brokerbinary
from fleetctl.reconcile import rollout
from fleetctl.reconcile.brokerfit import FIT_STEP, installs_nats, refuse_unfit
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import Versions
from fleetctl.reconcile.observation import LiveView
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.resources.packages import NATS_PACKAGE, STAGED_NATS
from fleetctl.reconcile.sessions import Options, Session
from tests.support.driftedfleet import BROKER, INPUTS, NODE1, NODE2, converged_bus, stand_ins
from tests.support.example import example_fleet
from tests.support.fakehosts import PYTHON, FakeHost, Log, converged

REAL = Path(sys.executable).parent / "nats-server"
HERE = os.uname().machine
OTHER = "aarch64" if HERE == "x86_64" else "x86_64"


@pytest.fixture(autouse=True)
def _real_binary() -> None:
    if not REAL.is_file():
        pytest.skip(f"no nats-server beside {sys.executable}: run ./dev setup")


def view_installing_nats(log: Log, broker_machine: str) -> LiveView:
    """A live plan of the example fleet, converged but for the broker, which has no
    nats-server yet and whose agent reported `linux-<broker_machine>`."""
    fleet = example_fleet()
    inputs = dataclasses.replace(INPUTS, versions=Versions(None, brokerbinary.PINNED_VERSION_LINE))
    desired = desired_state(fleet, inputs)
    observed = {name: converged(state) for name, state in desired.hosts.items()}
    key = f"package {NATS_PACKAGE}"
    broker = observed[BROKER]
    resources = {k: v for k, v in broker.resources.items() if k != key}
    observed[BROKER] = dataclasses.replace(
        broker, resources=resources, managed=broker.managed - {key}
    )
    bus = converged_bus(desired)
    plan = make_plan(desired, observed, bus=bus, selection=Selection(), revision=fleet.revision)
    hosts = stand_ins(log)
    raw = {BROKER: {"python": {**PYTHON, "platform": f"linux-{broker_machine}"}}}
    sessions = {
        name: Session(fleet.host(name), hosts[name], raw=raw.get(name, {"python": PYTHON}))
        for name in observed
    }
    for name, session in sessions.items():
        session.observed = observed[name]
    options = Options(settle=0.0)
    return LiveView(fleet, inputs, desired, sessions, {}, bus, plan, options, Selection())


def message(binary: Path) -> str:
    return brokerbinary.BrokerBinary(binary, "x").unfit_for(BROKER, f"linux-{OTHER}") or ""


def test_the_plan_leaves_out_a_broker_that_could_not_run_the_binary() -> None:
    log = Log()
    view = view_installing_nats(log, OTHER)
    assert [h.name for h in view.plan.hosts if installs_nats(h)] == [BROKER]
    broker = view.sessions[BROKER].transport
    assert isinstance(broker, FakeHost)
    refuse_unfit(view)
    why = message(REAL)
    assert why.startswith(f"the nats-server binary to deploy, {REAL}, cannot run on {BROKER}: ")
    assert f"it is built for {HERE}, and the host is {OTHER}; " in why
    assert view.errors == {BROKER: why} and view.error_steps == {BROKER: FIT_STEP}
    assert [(h.name, h.error, h.changes) for h in view.plan.hosts if h.name == BROKER] == [
        (BROKER, why, ())
    ]
    assert sorted(view.sessions) == [NODE1, NODE2]
    assert broker.closed  # its lock let go
    assert view.plan.bus is None  # the bus lives on the broker, which is not planned
    results = rollout.apply(view)
    assert [(r.name, r.ok, r.failed_step, r.error) for r in results] == [
        (BROKER, False, FIT_STEP, why),
        (NODE1, True, None, None),
        (NODE2, True, None, None),
    ]
    assert log.ops == []  # nothing sent to any host: the broker's, the nodes' converged


def test_a_broker_of_the_binarys_cpu_is_planned_as_it_was() -> None:
    view = view_installing_nats(Log(), HERE)
    before = view.plan
    refuse_unfit(view)
    assert view.errors == {} and view.plan is before
    assert sorted(view.sessions) == [BROKER, NODE1, NODE2]


def test_apply_refuses_before_uploading_when_its_plan_did_not_check() -> None:
    log = Log()
    view = view_installing_nats(log, OTHER)  # and no refuse_unfit
    results = rollout.apply(view)
    assert [(r.name, r.ok, r.failed_step, r.error, r.rolled_back) for r in results] == [
        (BROKER, False, FIT_STEP, message(REAL), False),
        (NODE1, True, None, None, False),
        (NODE2, True, None, None, False),
    ]
    assert log.of(BROKER) == []  # no upload, no program, no rollback


def test_apply_uploads_it_to_a_broker_of_its_cpu() -> None:
    log = Log()
    results = rollout.apply(view_installing_nats(log, HERE))
    assert [(r.name, r.ok) for r in results] == [(BROKER, True), (NODE1, True), (NODE2, True)]
    assert ("put", STAGED_NATS) in log.of(BROKER)
