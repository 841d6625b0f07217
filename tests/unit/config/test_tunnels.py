"""Which tunnels each host keeps, and what its pollers connect to: one broker, and a cluster
of three (examples/cluster/servers.yaml), a broker host with workers included. The exact
units and files are the golden sets (tests/golden/example, tests/golden/cluster)."""

from __future__ import annotations

import dataclasses

from fleetctl import layout
from fleetctl.config.model import Fleet
from fleetctl.config.tunnels import dialers_of, nats_urls, tunnel_hosts, tunnels_of
from fleetctl.identity.tunnelkeys import TunnelKey
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import Inputs
from tests.support.example import cluster_fleet, example_fleet

BROKERS = ("broker-1", "broker-2", "broker-3")


def _with_workers_on_broker_2(fleet: Fleet) -> Fleet:
    """broker-2 also runs cmd-docs-01."""
    hosts = tuple(
        dataclasses.replace(h, roles=h.roles | {"worker-host"}) if h.name == "broker-2" else h
        for h in fleet.hosts
    )
    workers = tuple(
        dataclasses.replace(w, host="broker-2") if w.id == "cmd-docs-01" else w
        for w in fleet.workers
    )
    return dataclasses.replace(fleet, hosts=hosts, workers=workers)


def _ports(fleet: Fleet, host: str) -> list[tuple[str, str, int]]:
    return [(t.broker.name, t.unit, t.port) for t in tunnels_of(fleet, fleet.host(host))]


def test_one_broker_one_tunnel_on_the_nats_port_and_none_on_the_broker() -> None:
    fleet = example_fleet()
    assert _ports(fleet, "worker-node-1") == [("broker-host", layout.TUNNEL_UNIT, 4222)]
    assert _ports(fleet, "broker-host") == []
    assert nats_urls(fleet, fleet.host("worker-node-1")) == ["nats://127.0.0.1:4222"]


def test_a_cluster_host_keeps_one_tunnel_per_broker_on_the_ports_after_the_nats_port() -> None:
    fleet = cluster_fleet()
    assert _ports(fleet, "worker-node-2") == [
        ("broker-1", "fleet-tunnel-broker-1.service", 4223),
        ("broker-2", "fleet-tunnel-broker-2.service", 4224),
        ("broker-3", "fleet-tunnel-broker-3.service", 4225),
    ]
    assert nats_urls(fleet, fleet.host("worker-node-2")) == [
        "nats://127.0.0.1:4223",
        "nats://127.0.0.1:4224",
        "nats://127.0.0.1:4225",
    ]
    assert tunnel_hosts(fleet) == ["worker-node-1", "worker-node-2"]


def test_a_cluster_broker_with_workers_uses_its_own_broker_and_tunnels_to_the_others() -> None:
    fleet = _with_workers_on_broker_2(cluster_fleet())
    assert _ports(fleet, "broker-2") == [
        ("broker-1", "fleet-tunnel-broker-1.service", 4223),
        ("broker-3", "fleet-tunnel-broker-3.service", 4225),
    ]
    assert nats_urls(fleet, fleet.host("broker-2")) == [
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4223",
        "nats://127.0.0.1:4225",
    ]
    assert dialers_of(fleet, "broker-1") == ["broker-2", "worker-node-1", "worker-node-2"]
    assert dialers_of(fleet, "broker-2") == ["worker-node-1", "worker-node-2"]


def test_each_broker_lets_in_exactly_the_keys_of_the_hosts_that_dial_it() -> None:
    fleet = _with_workers_on_broker_2(cluster_fleet())
    keys = {
        h: TunnelKey(h, b"private", f"ssh-ed25519 AAAA{h} fleet-tunnel@{h}")
        for h in tunnel_hosts(fleet)
    }
    hosts = desired_state(fleet, Inputs(tunnel_keys=keys)).hosts
    path = f"{layout.TUNNEL_HOME}/.ssh/authorized_keys"
    for broker in BROKERS:
        content = next(f.content for f in hosts[broker].files if f.path == path).decode()
        lets_in = [line.split()[-1] for line in content.splitlines()]
        assert lets_in == [f"fleet-tunnel@{h}" for h in dialers_of(fleet, broker)]
        assert all('permitopen="127.0.0.1:4222"' in line for line in content.splitlines())


def test_the_known_hosts_pins_every_broker_a_host_dials_or_waits_for_all_of_them() -> None:
    fleet = cluster_fleet()
    keys = {b: f"ssh-ed25519 AAAA{b}" for b in BROKERS}
    node = desired_state(fleet, Inputs(broker_keys=keys)).hosts["worker-node-1"]
    known = next(f.content for f in node.files if f.path == layout.TUNNEL_KNOWN_HOSTS)
    assert known.decode().splitlines() == [
        "192.0.2.10 ssh-ed25519 AAAAbroker-1",
        "192.0.2.13 ssh-ed25519 AAAAbroker-2",
        "192.0.2.14 ssh-ed25519 AAAAbroker-3",
    ]
    partial = desired_state(fleet, Inputs(broker_keys={"broker-1": keys["broker-1"]}))
    node = partial.hosts["worker-node-1"]
    assert layout.TUNNEL_KNOWN_HOSTS not in {f.path for f in node.files}
    assert node.unknown_files == (layout.TUNNEL_KNOWN_HOSTS,)
