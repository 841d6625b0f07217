"""A live plan (fleetctl/reconcile/observation.py) of stand-in hosts (tests/support/fakehosts.py):
every planned host connected, locked and observed, the bus read through the broker's
connection meanwhile, a host that cannot be reached, locked or observed reported by name
while the others are planned. The broker's bus answers nowhere here (a closed port); with
a real nats-server: tests/integration/test_observation_bus.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetctl import layout
from fleetctl.config.model import Host
from fleetctl.reconcile import facts, observation
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.observation import LiveView, live_plan
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.sessions import Options
from fleetctl.transport.base import Transport, TransportError
from tests.support.driftedfleet import (
    BROKER,
    INPUTS,
    KNOWN_HOSTS,
    NODE1,
    NODE2,
    observed_stand_ins,
)
from tests.support.example import example_fleet
from tests.support.fakehosts import FakeHost, Log, converged
from tests.support.natsserver import free_port

HOSTS = (BROKER, NODE1, NODE2)
EVERYTHING = Selection()


def stand_ins(log: Log) -> dict[str, FakeHost]:
    """The example fleet's hosts as right after an apply; nothing listens where the
    broker's bus forward leads."""
    return observed_stand_ins(log, bus_port=free_port())


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, FakeHost]], list[str]]:
    """Connect to the given stand-ins instead of over SSH (a name without one: refused);
    the names connected to, in order."""

    def use(hosts: dict[str, FakeHost]) -> list[str]:
        names: list[str] = []

        def connect(host: Host, options: Options) -> Transport:
            names.append(host.name)
            if host.name not in hosts:
                raise TransportError(host.name, "connection refused")
            return hosts[host.name]

        monkeypatch.setattr(observation, "connect", connect)
        return names

    return use


def plan(
    hosts: dict[str, FakeHost], *, lock: bool = False, selection: Selection = EVERYTHING
) -> LiveView:
    return live_plan(example_fleet(), INPUTS, selection, Options(), lock=lock)


def test_every_host_is_observed_and_the_bus_read_through_the_brokers_connection(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    log = Log()
    hosts = stand_ins(log)
    names = connected(hosts)
    view = plan(hosts)
    assert sorted(names) == sorted(HOSTS)  # one connection each
    assert sorted(view.sessions) == sorted(HOSTS) and view.errors == {}
    for name in HOSTS:
        wanted = facts.request(view.desired.hosts[name], with_contents=False)
        assert hosts[name].requests == [wanted], name
        assert view.sessions[name].observed == converged(view.desired.hosts[name])
    nats = f"{view.fleet.nats.listen}:{view.fleet.nats.port}"
    assert sorted(log.of(BROKER)) == [("forward", nats), ("observe",)]
    assert log.of(NODE1) == log.of(NODE2) == [("observe",)]
    assert [h.name for h in view.plan.hosts] == list(HOSTS)  # servers.yaml's order
    assert [(h.changes, h.error) for h in view.plan.hosts] == [((), None)] * 3
    assert view.plan.bus is not None and view.plan.bus.via == BROKER
    assert view.plan.bus.error is not None and view.plan.bus.error.startswith(
        f"{layout.NATS_UNIT} is installed on {BROKER} but nothing answers at nats://127.0.0.1:"
    )
    assert not view.bus.reachable


def test_what_a_host_answers_is_what_is_planned_for_it(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    hosts = stand_ins(Log())
    answer = dict(hosts[NODE1].facts)
    answer["files"] = {**answer["files"], KNOWN_HOSTS: None}  # gone from the host
    hosts[NODE1].facts = answer
    connected(hosts)
    view = plan(hosts)
    node1 = next(h for h in view.plan.hosts if h.name == NODE1)
    assert [(c.action, c.kind, c.name) for c in node1.changes] == [("create", "file", KNOWN_HOSTS)]
    assert [h.changes for h in view.plan.hosts if h.name != NODE1] == [(), ()]


def test_each_host_is_locked_and_observed_through_its_lock_until_closed(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    log = Log()
    hosts = stand_ins(log)
    connected(hosts)
    view = plan(hosts, lock=True)
    for name in HOSTS:
        assert [op for op in log.of(name) if op[0] != "forward"] == [
            ("lock",),
            ("observe under the lock",),
        ], name
    view.close()
    assert all(log.of(n)[-1] == ("unlock",) and hosts[n].closed for n in HOSTS)


def test_a_host_another_apply_holds_is_an_error_naming_the_holder(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    hosts = stand_ins(Log())
    hosts[NODE2].holder = {
        "command": "fleetctl apply --host worker-node-2",
        "owner": "bob@laptop",
        "since": "2026-12-06T10:00:00+0000",
    }
    connected(hosts)
    view = plan(hosts, lock=True)
    why = (
        "another apply holds the lock: fleetctl apply --host worker-node-2 by bob@laptop "
        "since 2026-12-06T10:00:00+0000. Wait for it, or retry with --lock-wait SECONDS (a "
        "lock whose holder lost its connection lapses after 20 s)."
    )
    assert view.errors == {NODE2: why}
    assert sorted(view.sessions) == [BROKER, NODE1]
    assert hosts[NODE2].requests == [] and hosts[NODE2].closed
    assert [(h.name, h.error) for h in view.plan.hosts] == [
        (BROKER, None),
        (NODE1, None),
        (NODE2, why),
    ]


def test_a_host_that_cannot_be_reached_or_is_lost_is_reported_the_others_planned(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    hosts = stand_ins(Log())
    del hosts[NODE1]  # refused at connect
    hosts[NODE2].unreachable = True  # lost once connected
    connected(hosts)
    view = plan(hosts)
    assert view.errors == {NODE1: "connection refused", NODE2: "connection lost"}
    assert hosts[NODE2].closed
    assert [(h.name, h.changes, h.error) for h in view.plan.hosts] == [
        (BROKER, (), None),
        (NODE1, (), "connection refused"),
        (NODE2, (), "connection lost"),
    ]
    assert view.plan.bus is not None  # the broker was observed: its bus is planned


def test_without_the_broker_the_bus_is_not_planned(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    hosts = stand_ins(Log())
    del hosts[BROKER]
    connected(hosts)
    view = plan(hosts)
    assert view.errors == {BROKER: "connection refused"}
    assert view.plan.bus is None
    assert [h.error for h in view.plan.hosts] == ["connection refused", None, None]


def test_a_broker_whose_bus_cannot_be_forwarded_to_is_an_error_host(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    hosts = stand_ins(Log())
    hosts[BROKER].bus_port = None  # the forward itself fails
    connected(hosts)
    view = plan(hosts)
    assert view.errors == {BROKER: "no bus behind this stand-in host"}
    assert BROKER not in view.sessions and hosts[BROKER].closed
    assert view.plan.bus is None


def test_a_plan_narrowed_to_a_host_connects_to_that_host_only(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    log = Log()
    hosts = stand_ins(log)
    names = connected(hosts)
    view = plan(hosts, selection=Selection(hosts=frozenset({NODE1})))
    assert names == [NODE1]
    assert [h.name for h in view.plan.hosts] == [NODE1] and view.plan.bus is None
    assert log.of(BROKER) == []


def test_file_contents_are_asked_for_only_when_a_diff_is_shown(
    connected: Callable[[dict[str, FakeHost]], list[str]],
) -> None:
    hosts = stand_ins(Log())
    connected(hosts)
    selection = Selection(hosts=frozenset({NODE1}))
    fleet = example_fleet()
    live_plan(fleet, INPUTS, selection, Options(with_contents=True), lock=False)
    [request] = hosts[NODE1].requests
    state = desired_state(fleet, INPUTS).hosts[NODE1]
    assert request["contents"] == [f.path for f in state.files if not f.sensitive]
    assert "/etc/fleet/tunnel/id_ed25519" not in request["contents"]  # a secret: never read
