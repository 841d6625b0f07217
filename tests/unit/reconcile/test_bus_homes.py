"""The bus may live on several hosts (`Fleet.brokers`, `BusState.homes`) although validation
allows one broker today: a plan reaches it through the first home that answers, and the
bus's hosts are the first wave. Two homes here, built past validation; the hosts are
stand-ins (tests/support/fakehosts.py) and so is reading the bus through one of them."""

from __future__ import annotations

import dataclasses

import pytest

from fleetctl.config.model import Fleet, Host
from fleetctl.reconcile import observation, rollout
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.desired.state import FleetState
from fleetctl.reconcile.facts import ObservedBus, ObservedHost
from fleetctl.reconcile.inputs import Inputs
from fleetctl.reconcile.plan.fleet import make_plan, planned_hosts
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.sessions import Options, Session
from fleetctl.transport.base import TransportError
from tests.support.driftedfleet import converged_bus
from tests.support.example import example_fleet
from tests.support.fakehosts import PYTHON, FakeHost, Log

FIRST, SECOND = "broker-host", "broker-2"
INPUTS = Inputs(broker_keys={FIRST: "ssh-ed25519 AAAAbroker", SECOND: "ssh-ed25519 AAAAsecond"})
DOWN = ObservedBus(reachable=False, error="nothing answers at nats://127.0.0.1:4222")
NATS_INSTALLED = {"units": {"nats-server.service": {"enabled": True, "active": False}}}


def two_brokers() -> Fleet:
    """The example fleet with a second broker after the first (servers.yaml order)."""
    fleet = example_fleet()
    first = fleet.host(FIRST)
    second = dataclasses.replace(first, name=SECOND, address="192.0.2.20")
    rest = tuple(h for h in fleet.hosts if h.name != FIRST)
    return dataclasses.replace(fleet, hosts=(first, second, *rest))


def test_every_broker_is_a_home_of_the_bus_and_the_offline_plan_goes_through_the_first() -> None:
    fleet = two_brokers()
    assert [h.name for h in fleet.brokers] == [FIRST, SECOND]
    desired = desired_state(fleet)
    assert desired.bus.homes == (FIRST, SECOND)
    assert planned_hosts(desired, Selection(workers=frozenset({"cmd-docs-01"})))[:2] == [
        FIRST,
        SECOND,
    ]
    plan = make_plan(desired)
    assert plan.bus is not None
    assert (plan.bus.via, plan.bus.homes) == (FIRST, (FIRST, SECOND))
    assert rollout.waves(plan)[0] == [FIRST, SECOND]


def test_a_home_that_could_not_be_observed_is_passed_over_for_the_next() -> None:
    desired = desired_state(two_brokers())
    seen = dataclasses.replace(converged_bus(desired), via=SECOND)
    hosts = {n: ObservedHost() for n in desired.hosts if n != FIRST}
    plan = make_plan(desired, hosts, bus=seen, errors={FIRST: "connection refused"})
    assert plan.bus is not None
    assert (plan.bus.via, plan.bus.changes, plan.bus.error) == (SECOND, (), None)
    assert rollout.waves(plan)[0] == [SECOND]


class Stand:
    """Stand-in hosts and a stand-in for reading the bus through one of them: `refused`
    hosts cannot be connected to; `bus` is what the bus looks like through each host."""

    def __init__(self, fleet: Fleet, refused: set[str], bus: dict[str, ObservedBus]) -> None:
        log = Log()
        self.hosts = {
            h.name: FakeHost(h.name, log, facts={"python": PYTHON, **NATS_INSTALLED})
            for h in fleet.hosts
        }
        self.refused = refused
        self.bus = bus
        self.read_through: list[str] = []

    def connect(self, host: Host, options: Options) -> FakeHost:
        if host.name in self.refused:
            raise TransportError(host.name, "connection refused")
        return self.hosts[host.name]

    def observe_bus(self, fleet: Fleet, shape: FleetState, session: Session) -> ObservedBus:
        self.read_through.append(session.host.name)
        return self.bus[session.host.name]


def live(monkeypatch: pytest.MonkeyPatch, stand: Stand) -> observation.LiveView:
    monkeypatch.setattr(observation, "connect", stand.connect)
    monkeypatch.setattr(observation, "_observe_bus", stand.observe_bus)
    return observation.live_plan(two_brokers(), INPUTS, Selection(), Options(), lock=False)


def test_the_first_home_unreachable_the_bus_is_observed_through_the_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    converged = converged_bus(desired_state(two_brokers(), INPUTS))
    stand = Stand(two_brokers(), refused={FIRST}, bus={SECOND: converged})
    view = live(monkeypatch, stand)
    assert stand.read_through == [SECOND]
    assert view.errors == {FIRST: "connection refused"}
    assert view.bus.via == SECOND
    assert view.plan.bus is not None
    assert (view.plan.bus.via, view.plan.bus.changes, view.plan.bus.error) == (SECOND, (), None)
    assert rollout.waves(view.plan)[0] == [SECOND]


def test_a_home_whose_bus_does_not_answer_is_passed_over_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    converged = converged_bus(desired_state(two_brokers(), INPUTS))
    stand = Stand(two_brokers(), refused=set(), bus={FIRST: DOWN, SECOND: converged})
    view = live(monkeypatch, stand)
    assert stand.read_through == [FIRST, SECOND]
    assert view.plan.bus is not None
    assert (view.plan.bus.via, view.plan.bus.changes, view.plan.bus.error) == (SECOND, (), None)
    assert rollout.waves(view.plan)[0] == [FIRST, SECOND]


def test_when_no_home_answers_the_plan_says_why_through_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand = Stand(two_brokers(), refused=set(), bus={FIRST: DOWN, SECOND: DOWN})
    view = live(monkeypatch, stand)
    assert stand.read_through == [FIRST, SECOND]
    assert view.plan.bus is not None
    assert view.plan.bus.via == FIRST and view.plan.bus.changes == ()
    assert view.plan.bus.error == (
        "nats-server.service is installed on broker-host but nothing answers at "
        "nats://127.0.0.1:4222"
    )
