"""`systemd-analyze security --offline=true` on every rendered unit: the exposure score
(0 best, 10 worst) of the tunnel and nats-server stays at most 2.0, each poller's at most
1.5 (what the real LLM CLIs leave room for: docs/security.md "Unit hardening")."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from fleetctl.reconcile.desired.build import desired_state
from fleetctl.render.engine import render_unit
from tests.support.example import example_fleet

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is needed (apt-get install systemd)"
)
SCORE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")
LIMITS = {"fleet-tunnel.service": 2.0, "nats-server.service": 2.0}
POLLER_LIMIT = 1.5
POLLERS = [  # the example fleet's enabled workers, by host
    "worker-node-1/cc-go-dev-01-poller.service",
    "worker-node-1/cmd-docs-01-poller.service",
    "worker-node-1/cmd-wordcount-01-poller.service",
    "worker-node-1/codex-py-dev-01-poller.service",
    "worker-node-2/cc-zai-high-dev-01-poller.service",
    "worker-node-2/cmd-keywords-01-poller.service",
    "worker-node-2/gemini-ts-rev-01-poller.service",
]
# What the CLIs need (Node's JIT writes and runs code; os.cpus() reads /proc/cpuinfo; the
# APIs are on the internet): these must stay out of a poller unit.
NOT_FOR_POLLERS = ("MemoryDenyWriteExecute=", "ProcSubset=", "PrivateNetwork=", "IPAddressDeny=")


def exposure(unit: Path) -> float:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = SCORE.search(done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def rendered_units(tmp_path: Path) -> dict[str, Path]:
    units = {}
    for host, state in desired_state(example_fleet()).hosts.items():
        for spec in state.files:
            if spec.path.endswith(".service"):
                path = tmp_path / host / Path(spec.path).name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(spec.content)
                units[f"{host}/{path.name}"] = path
    return units


@needs_analyze
def test_every_rendered_unit_is_within_its_exposure_limit(tmp_path: Path) -> None:
    units = rendered_units(tmp_path)
    pollers = [k for k in units if k.endswith("-poller.service")]
    assert len(pollers) == 7 and len(units) == len(pollers) + 3  # tunnels x2, nats-server
    scores = {k: exposure(p) for k, p in units.items()}
    over = {k: s for k, s in scores.items() if s > LIMITS.get(k.split("/")[1], POLLER_LIMIT)}
    assert over == {}, scores


def test_poller_units_keep_what_the_llm_clis_need(tmp_path: Path) -> None:
    units = rendered_units(tmp_path)
    pollers = {k: p.read_text() for k, p in units.items() if k.endswith("-poller.service")}
    assert sorted(pollers) == POLLERS  # every enabled worker's unit, each checked below
    for name, text in pollers.items():
        assert [d for d in NOT_FOR_POLLERS if d in text] == [], name
        assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in text.splitlines(), name


@needs_analyze
def test_a_tunnel_to_a_broker_named_by_host_name_is_within_its_limit_too(
    tmp_path: Path,
) -> None:
    """IPAddressAllow= takes addresses only: a broker named by DNS gets no allow list."""
    broker = SimpleNamespace(name="broker", address="broker.example.org", port=22)
    unit = render_unit(
        "systemd/tunnel.service.j2",
        host=SimpleNamespace(name="node"),
        broker=broker,
        port=4222,
        tunnel_user="fleet-tunnel",
        known_hosts="/etc/fleet/tunnel/known_hosts",
        key="/etc/fleet/tunnel/id_ed25519",
        forward="127.0.0.1:4222:127.0.0.1:4222",
        login="fleet-tunnel@broker.example.org",
    )
    assert "IPAddressAllow" not in unit
    path = tmp_path / "fleet-tunnel.service"
    path.write_text(unit)
    assert exposure(path) <= LIMITS["fleet-tunnel.service"]
