"""Every rendered file of the example fleets, byte for byte against tests/golden/: the
example (one broker) and the same workers on three brokers (examples/cluster).

The test never rewrites the golden files. After an intended change, regenerate them with
`.venv/bin/fleetctl render --out tests/golden/example` (and, for the cluster,
`.venv/bin/fleetctl -s examples/cluster/servers.yaml render --out tests/golden/cluster`)
and review the diff in git.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleetctl.config.model import Fleet
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import gather
from tests.support.example import cluster_fleet, example_fleet

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
REGENERATE = (
    "regenerate on purpose: .venv/bin/fleetctl render --out tests/golden/example, or "
    ".venv/bin/fleetctl -s examples/cluster/servers.yaml render --out tests/golden/cluster"
)
FLEETS: dict[str, Callable[[], Fleet]] = {"example": example_fleet, "cluster": cluster_fleet}


def _rendered(which: str) -> dict[str, bytes]:
    files = {}
    fleet = FLEETS[which]()  # with the inputs `render` gathers: an empty store, no keys yet
    for host, state in desired_state(fleet, gather(fleet)).hosts.items():
        for spec in state.files:
            if not spec.sensitive and not spec.generated:
                files[f"{host}{spec.path}"] = spec.content
    return files


def _golden(which: str) -> dict[str, bytes]:
    root = GOLDEN / which
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".fleetctl-render"
    }


@pytest.mark.parametrize("which", sorted(FLEETS))
def test_the_same_set_of_files_is_rendered(which: str) -> None:
    assert sorted(_rendered(which)) == sorted(_golden(which)), REGENERATE


@pytest.mark.parametrize("which", sorted(FLEETS))
def test_every_file_matches_its_golden_copy_byte_for_byte(which: str) -> None:
    golden = _golden(which)
    for name, content in _rendered(which).items():
        assert content == golden.get(name), f"{name} differs from its golden copy; {REGENERATE}"


def test_golden_set_covers_every_backend_tunnel_and_broker() -> None:
    names = set(_golden("example"))
    units = {n.rsplit("/", 1)[-1] for n in names if n.endswith(".service")}
    assert {"nats-server.service", "fleet-tunnel.service"} <= units
    backends = {w.backend for w in example_fleet().workers if w.enabled}
    assert backends == {"claude", "codex", "gemini", "command"}
    assert "broker-host/etc/nats/nats-server.conf" in names


def test_the_cluster_set_has_every_broker_and_a_tunnel_to_each() -> None:
    names = set(_golden("cluster"))
    brokers = ("broker-1", "broker-2", "broker-3")
    assert {f"{b}/etc/nats/nats-server.conf" for b in brokers} <= names
    for host in ("worker-node-1", "worker-node-2"):
        tunnels = {n for n in names if n.startswith(f"{host}/etc/systemd/system/fleet-tunnel")}
        assert tunnels == {f"{host}/etc/systemd/system/fleet-tunnel-{b}.service" for b in brokers}
