"""The broker's side of the tunnels, as data: the key options and the sshd drop-in.
What they do against a real sshd is tests/e2e/test_tunnel_key.py."""

from __future__ import annotations

from pathlib import Path

from fleetctl import layout
from fleetctl.identity.tunnelkeys import TunnelKey
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import Inputs
from tests.support.example import example_fleet

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


def test_the_host_agent_knows_the_drop_in_path() -> None:
    steps = Path(layout.__file__).parent / "hostside" / "steps.py"
    assert f'SSHD_TUNNEL_CONF = "{layout.SSHD_TUNNEL_CONF}"' in steps.read_text()


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
