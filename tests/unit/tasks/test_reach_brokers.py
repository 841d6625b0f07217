"""A task command reaches the bus through an SSH forward to the first of its hosts
(`Fleet.brokers`) that answers: the example fleet on three brokers (a cluster), as stand-in
hosts (tests/support/fakehosts.py) whose forwards lead to a stand-in NATS greeting (a
socket that sends `INFO`, as nats-server does first) or to a closed port (nats-server
down: on a cluster, the next broker is tried)."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl.bus.client import BusError
from fleetctl.config.model import Fleet, Host
from fleetctl.identity.natsaccess import ADMIN_USER, PUBLISHER_USER
from fleetctl.reconcile import sessions
from fleetctl.tasks.reach import BusOptions, reach, reach_as
from fleetctl.transport.base import TransportError
from tests.support.example import cluster_fleet, example_fleet
from tests.support.fakehosts import FakeHost, Log
from tests.support.natsserver import free_port


@pytest.fixture
def greeting() -> Iterator[int]:
    """A port whose every connection is greeted with `INFO {}` (a stand-in nats-server)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"INFO {}\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def on_real_addresses(fleet: Fleet) -> Fleet:
    """The fleet with its hosts at addresses of a real network (at an example address, no
    broker is even tried)."""
    hosts = tuple(
        dataclasses.replace(h, address=f"10.213.0.{10 + i}") for i, h in enumerate(fleet.hosts)
    )
    return dataclasses.replace(fleet, hosts=hosts)


def stand_in(monkeypatch: pytest.MonkeyPatch, refused: set[str], ports: dict[str, int]) -> Log:
    log = Log()

    def connect(host: Host, options: sessions.Options) -> FakeHost:
        if host.name in refused:
            raise TransportError(host.name, "connection refused")
        return FakeHost(host.name, log, bus_port=ports.get(host.name))

    monkeypatch.setattr(sessions, "connect", connect)
    return log


def test_the_first_broker_unreachable_the_forward_goes_through_the_second(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, greeting: int
) -> None:
    ports = dict.fromkeys(("broker-1", "broker-2", "broker-3"), greeting)
    log = stand_in(monkeypatch, refused={"broker-1"}, ports=ports)
    with reach(
        on_real_addresses(cluster_fleet()), tmp_path / "fleet.yaml", BusOptions()
    ) as endpoint:
        assert endpoint.url == f"nats://127.0.0.1:{greeting}"
    assert log.ops == [("broker-2", "forward", "127.0.0.1:4222")]


def test_a_broker_whose_nats_server_is_down_is_passed_over_for_the_next(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, greeting: int
) -> None:
    """SSH answers, the forward opens, nothing greets behind it: the next broker."""
    ports = {"broker-1": free_port(), "broker-2": greeting, "broker-3": greeting}
    log = stand_in(monkeypatch, refused=set(), ports=ports)
    users = (ADMIN_USER, PUBLISHER_USER)
    with reach_as(
        on_real_addresses(cluster_fleet()), tmp_path / "fleet.yaml", BusOptions(), users
    ) as endpoints:
        assert endpoints[ADMIN_USER].url == f"nats://127.0.0.1:{greeting}"
    assert [op for op in log.ops if op[1] == "forward"] == [
        ("broker-1", "forward", "127.0.0.1:4222"),
        ("broker-2", "forward", "127.0.0.1:4222"),
    ]


def test_no_broker_answering_says_so_for_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stand_in(monkeypatch, refused={"broker-1", "broker-2"}, ports={"broker-3": free_port()})
    with (
        pytest.raises(BusError) as e,
        reach(on_real_addresses(cluster_fleet()), tmp_path / "fleet.yaml", BusOptions()),
    ):
        pass
    assert str(e.value) == (
        "cannot reach the broker broker-1 over SSH: broker-1: connection refused; "
        "cannot reach the broker broker-2 over SSH: broker-2: connection refused; "
        "nats-server on the broker broker-3 does not answer"
    )


def test_an_example_broker_address_is_not_tried_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = stand_in(monkeypatch, refused=set(), ports={})
    with (
        pytest.raises(BusError) as e,
        reach(example_fleet(), tmp_path / "fleet.yaml", BusOptions()),
    ):
        pass
    assert str(e.value) == (
        "no local fleet is running here (fleetctl up); servers.yaml's broker 192.0.2.10 is "
        "the example address (put your broker's address there, or pass --server URL)"
    )
    assert log.ops == []  # no SSH connection was even tried
