"""The rollout's bus step against a real nats-server, behind a stand-in broker host
(tests/support/fakehosts.py: its forward leads to the server): the bus is changed once the
broker's own program has run and its units stayed up, before any other host's wave, and
afterwards the server holds what the plan wanted. The fleet has no operator yet, so the
server accepts fleetctl without credentials."""

from __future__ import annotations

import pytest

from fleetctl import layout
from fleetctl.bus.client import at
from fleetctl.identity.fleetusers import identity
from fleetctl.reconcile import jetstream, rollout
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.selection import Selection
from tests.support.driftedfleet import (
    BROKER,
    BROKER_PROGRAM,
    NODE1,
    NODE2,
    RESTORE,
    live_view,
    stand_ins,
)
from tests.support.fakehosts import Log
from tests.support.natsserver import NatsServer

pytestmark = pytest.mark.integration


def test_the_bus_is_applied_after_its_host_and_before_the_next_wave(server: NatsServer) -> None:
    log = Log()
    view = live_view(stand_ins(log, broker={"bus_port": server.port}), bus=ObservedBus())
    bus = view.plan.bus
    assert bus is not None and bus.via == BROKER
    planned = sorted(f"{c.action} {c.kind} {c.name}" for c in bus.changes)
    assert planned and all(p.startswith("create ") for p in planned)

    results = rollout.apply(view)

    assert [(r.name, r.ok, r.failed_step, r.error) for r in results] == [
        (BROKER, True, None, None),
        (NODE1, True, None, None),
        (NODE2, True, None, None),
    ]
    assert results[0].steps == len(BROKER_PROGRAM) - 1 + len(planned)
    nats = f"{view.fleet.nats.listen}:{view.fleet.nats.port}"
    assert [op[:3] for op in log.ops if op[0] != "*"] == [
        (BROKER, "apply", BROKER_PROGRAM[1]),
        (BROKER, "run", "systemctl"),
        (BROKER, "apply", "confirm_previous"),
        (BROKER, "forward", nats),  # the bus, through the broker's connection
        (NODE1, "apply", BROKER_PROGRAM[1]),  # the previous version kept first, everywhere
        (NODE1, "run", "systemctl"),
        (NODE1, "apply", "confirm_previous"),
        (NODE2, "apply", BROKER_PROGRAM[1]),
        (NODE2, "run", "systemctl"),
        (NODE2, "apply", "confirm_previous"),
    ]
    assert log.of(BROKER)[1] == ("run", "systemctl", "is-active", layout.NATS_UNIT)
    seen = jetstream.observe(at(server.url, identity(view.fleet)), view.desired.bus)
    again = diff_bus(view.desired.bus, seen, Selection(), view.fleet.host(BROKER))
    assert again is not None and (again.changes, again.unchanged) == ((), len(planned))


def test_a_broker_whose_program_failed_leaves_the_bus_as_it_was(server: NatsServer) -> None:
    log = Log()
    failing = {"bus_port": server.port, "fail_step": 1}
    view = live_view(stand_ins(log, broker=failing), bus=ObservedBus())
    results = rollout.apply(view)
    assert [(r.name, r.ok) for r in results] == [(BROKER, False), (NODE1, True), (NODE2, True)]
    assert log.of(BROKER) == [BROKER_PROGRAM, RESTORE]  # rolled back, no forward
    seen = jetstream.observe(at(server.url, identity(view.fleet)), view.desired.bus)
    assert (seen.reachable, dict(seen.resources)) == (True, {})
