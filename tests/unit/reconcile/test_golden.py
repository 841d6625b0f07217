"""Every rendered file of the example fleet, byte for byte against tests/golden/example.

The test never rewrites the golden files. After an intended change, regenerate them with
`.venv/bin/fleetctl render --out tests/golden/example` and review the diff in git.
"""

from __future__ import annotations

from pathlib import Path

from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import gather
from tests.support.example import example_fleet

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "example"
REGENERATE = "regenerate on purpose: .venv/bin/fleetctl render --out tests/golden/example"


def _rendered() -> dict[str, bytes]:
    files = {}
    fleet = example_fleet()  # with the inputs `render` gathers: an empty store, no keys yet
    for host, state in desired_state(fleet, gather(fleet)).hosts.items():
        for spec in state.files:
            if not spec.sensitive and not spec.generated:
                files[f"{host}{spec.path}"] = spec.content
    return files


def _golden() -> dict[str, bytes]:
    return {
        str(p.relative_to(GOLDEN)): p.read_bytes()
        for p in sorted(GOLDEN.rglob("*"))
        if p.is_file() and p.name != ".fleetctl-render"
    }


def test_the_same_set_of_files_is_rendered() -> None:
    assert sorted(_rendered()) == sorted(_golden()), REGENERATE


def test_every_file_matches_its_golden_copy_byte_for_byte() -> None:
    golden = _golden()
    for name, content in _rendered().items():
        assert content == golden.get(name), f"{name} differs from its golden copy; {REGENERATE}"


def test_golden_set_covers_every_backend_tunnel_and_broker() -> None:
    names = set(_golden())
    units = {n.rsplit("/", 1)[-1] for n in names if n.endswith(".service")}
    assert {"nats-server.service", "fleet-tunnel.service"} <= units
    backends = {w.backend for w in example_fleet().workers if w.enabled}
    assert backends == {"claude", "codex", "gemini", "command"}
    assert "broker-host/etc/nats/nats-server.conf" in names
