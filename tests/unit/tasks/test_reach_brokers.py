"""A task command reaches the bus through an SSH forward to the first of its hosts
(`Fleet.brokers`) that answers; two brokers here, built past validation, as stand-in hosts
(tests/support/fakehosts.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fleetctl.bus.client import BusError
from fleetctl.config.model import Fleet, Host
from fleetctl.reconcile import sessions
from fleetctl.tasks.reach import BusOptions, reach
from fleetctl.transport.base import TransportError
from tests.support.example import example_fleet
from tests.support.fakehosts import FakeHost, Log


def two_brokers() -> Fleet:
    fleet = example_fleet()
    first = fleet.host("broker-host")
    second = dataclasses.replace(first, name="broker-2", address="192.0.2.20")
    rest = tuple(h for h in fleet.hosts if h.name != first.name)
    return dataclasses.replace(fleet, hosts=(first, second, *rest))


def stand_in(monkeypatch: pytest.MonkeyPatch, refused: set[str]) -> Log:
    log = Log()

    def connect(host: Host, options: sessions.Options) -> FakeHost:
        if host.name in refused:
            raise TransportError(host.name, "connection refused")
        return FakeHost(host.name, log, bus_port=14222)

    monkeypatch.setattr(sessions, "connect", connect)
    return log


def test_the_first_broker_unreachable_the_forward_goes_through_the_second(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = stand_in(monkeypatch, refused={"broker-host"})
    with reach(two_brokers(), tmp_path / "fleet.yaml", BusOptions()) as endpoint:
        assert endpoint.url == "nats://127.0.0.1:14222"
    assert log.ops == [("broker-2", "forward", "127.0.0.1:4222")]


def test_no_broker_answering_says_so_for_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stand_in(monkeypatch, refused={"broker-host", "broker-2"})
    with (
        pytest.raises(BusError) as e,
        reach(two_brokers(), tmp_path / "fleet.yaml", BusOptions()),
    ):
        pass
    assert str(e.value) == (
        "cannot reach the broker broker-host over SSH: broker-host: connection refused; "
        "cannot reach the broker broker-2 over SSH: broker-2: connection refused"
    )
