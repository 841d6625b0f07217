"""A live plan's bus, read through the stand-in broker's connection from a real
nats-server (tests/support/fakehosts.py: the forward leads to it): an empty server plans
every stream and consumer, and once those are made the next plan has nothing to do on the
bus. The fleet has no operator yet, so the server accepts fleetctl without credentials."""

from __future__ import annotations

import pytest

from fleetctl.bus.client import at
from fleetctl.config.model import Host
from fleetctl.identity.fleetusers import identity
from fleetctl.reconcile import jetstream, observation
from fleetctl.reconcile.observation import live_plan
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.sessions import Options
from fleetctl.transport.base import Transport
from tests.support.driftedfleet import BROKER, INPUTS, observed_stand_ins
from tests.support.example import example_fleet
from tests.support.fakehosts import Log
from tests.support.natsserver import NatsServer

pytestmark = pytest.mark.integration


def test_the_bus_is_planned_from_what_the_server_holds(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = example_fleet()
    hosts = observed_stand_ins(Log(), bus_port=server.port)

    def connect(host: Host, options: Options) -> Transport:
        return hosts[host.name]

    monkeypatch.setattr(observation, "connect", connect)
    view = live_plan(fleet, INPUTS, Selection(), Options(), lock=False)
    bus = view.plan.bus
    assert bus is not None and (bus.via, bus.error, bus.unchanged) == (BROKER, None, 0)
    wanted = sorted(r.key for r, _ in view.desired.bus.resources())  # "stream AF_TASKS"
    assert sorted(f"{c.action} {c.kind} {c.name}" for c in bus.changes) == [
        f"create {w}" for w in wanted
    ]
    assert view.bus.reachable and dict(view.bus.resources) == {}

    jetstream.apply(at(server.url, identity(fleet)), jetstream.ordered(bus.changes))
    again = live_plan(fleet, INPUTS, Selection(), Options(), lock=False).plan.bus
    assert again is not None and (again.changes, again.unchanged) == ((), len(wanted))
