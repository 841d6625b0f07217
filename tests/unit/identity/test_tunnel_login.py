"""The broker's side of the tunnels, as data: the key options and the sshd drop-in.
What they do against a real sshd is tests/e2e/test_tunnel_key.py."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from fleetctl import layout
from fleetctl.identity.tunnelkeys import TunnelKey
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.facts import MANIFEST, ObservedHost
from fleetctl.reconcile.inputs import Inputs
from fleetctl.reconcile.plan.changes import fingerprint
from fleetctl.reconcile.plan.hosts import diff_host, unit_inputs
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.program import program
from tests.support.example import example_fleet
from tests.support.hostagent import fake_agent

NODE = "worker-node-1"
KEY = TunnelKey(NODE, b"-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n", "ssh-ed25519 AAAA x")


def broker_files() -> dict[str, bytes]:
    states = desired_state(example_fleet(), Inputs(tunnel_keys={NODE: KEY})).hosts
    return {f.path: f.content for f in states["broker-host"].files}


def test_each_tunnel_key_may_open_the_nats_port_and_listen_nowhere() -> None:
    keys = broker_files()[f"{layout.TUNNEL_HOME}/.ssh/authorized_keys"].decode()
    assert keys == (
        'restrict,port-forwarding,permitopen="127.0.0.1:4222",permitlisten="127.0.0.1:1",'
        'command="/bin/false" ssh-ed25519 AAAA x\n'
    )


def test_the_broker_sshd_gets_a_match_block_for_the_tunnel_user() -> None:
    block = broker_files()[layout.SSHD_TUNNEL_CONF].decode()
    assert block.splitlines()[1:] == [
        "Match User fleet-tunnel",
        "\tAllowTcpForwarding local",
        "\tAllowStreamLocalForwarding no",
        "\tPermitOpen 127.0.0.1:4222",
        "\tPermitListen none",
        "\tGatewayPorts no",
        "\tPermitTTY no",
        "\tPermitTunnel no",
        "\tX11Forwarding no",
        "\tAllowAgentForwarding no",
        "\tPermitUserRC no",
        "\tAuthenticationMethods publickey",
        "\tForceCommand /bin/false",
    ]


def test_applying_the_drop_in_has_sshd_check_it_and_reload(tmp_path: Path) -> None:
    """The broker's host program for a changed drop-in, run by the host agent (its commands
    and writes recorded, not done): sshd checks the whole config, shows that the tunnel
    user gets the drop-in's settings, and the listening sshd (a stand-in process) gets a
    SIGHUP. Nothing sshd-related happens for the agent's other files."""
    state = desired_state(example_fleet(), Inputs(tunnel_keys={NODE: KEY})).hosts["broker-host"]
    resources = {r.key: fingerprint(r) for r, _ in state.resources()}
    observed = ObservedHost(
        resources={k: v for k, v in resources.items() if k != f"file {layout.SSHD_TUNNEL_CONF}"},
        managed=frozenset(resources),
        unit_inputs={u.name: unit_inputs(state, u, ObservedHost()) for u in state.units},
    )
    plan = diff_host(state, observed, Selection(), live=True)
    assert [(c.action, c.name) for c in plan.changes] == [("create", layout.SSHD_TUNNEL_CONF)]
    prog = program(plan, observed, revision="r", applied_by="test", now=0)

    sshd = subprocess.Popen(["sleep", "60"])  # stands in for the listening sshd
    pidfile = tmp_path / "sshd.pid"
    pidfile.write_text(f"{sshd.pid}\n")
    effective = f"allowstreamlocalforwarding no\npermitlisten none\npidfile {pidfile}\n"
    agent = fake_agent({("/usr/sbin/sshd", "-T"): (0, effective.encode())})
    written: list[tuple[str, bytes, int]] = []
    agent.ns["write_file"] = lambda path, data, owner="root", group="root", mode=0o644: (
        written.append((path, data, mode))
    )
    try:
        code = agent.apply(*(s.op for s in prog.steps))
        hung_up = sshd.wait(timeout=5) == -signal.SIGHUP
    except subprocess.TimeoutExpired:
        hung_up = False
    finally:
        sshd.kill()
        sshd.wait()
    assert (code, [e["ok"] for e in agent.events]) == (0, [True] * len(prog.steps))
    dropin = next(f.content for f in state.files if f.path == layout.SSHD_TUNNEL_CONF)
    assert [w[0] for w in written] == [layout.SSHD_TUNNEL_CONF, MANIFEST]
    assert written[0][1:] == (dropin, 0o644)
    assert agent.spawn.calls == [
        ["/usr/sbin/sshd", "-t"],
        ["/usr/sbin/sshd", "-T", "-C", "user=fleet-tunnel,host=fleetctl,addr=127.0.0.1"],
    ]
    assert hung_up


def test_each_host_gets_only_its_own_workers_creds_and_its_own_tunnel_key() -> None:
    """What a stolen host (or its SSH host key, used to impersonate it) can give away."""
    fleet = example_fleet()
    creds = {w.id: f"creds of {w.id}".encode() for w in fleet.workers if w.enabled}
    keys = {
        h: TunnelKey(h, f"tunnel key of {h}".encode(), f"ssh-ed25519 AAAA{h} x")
        for h in ("worker-node-1", "worker-node-2")
    }
    for host, state in desired_state(fleet, Inputs(creds=creds, tunnel_keys=keys)).hosts.items():
        secrets = {f.content for f in state.files if f.sensitive}
        own = {creds[w.id] for w in fleet.workers if w.enabled and w.host == host}
        if host in keys:
            own.add(keys[host].private)
        assert secrets == own, host
