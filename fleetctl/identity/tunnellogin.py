"""The broker's side of the tunnels: what a worker host's tunnel key may do there.

A tunnel needs exactly one thing, a local forward (`ssh -L`) to the NATS port. Two layers
grant that and nothing else, because with OpenSSH (9.2, tests/e2e/test_tunnel_key.py)
the key's authorized_keys options alone cannot:

- the key line: `restrict` (no PTY, agent, X11 or rc), `port-forwarding` with one
  `permitopen`, `permitlisten` narrowed to a port no unprivileged user can bind (there is
  no `permitlisten="none"`), and a forced command. But sshd matches *any* `permitlisten`
  entry for a unix-socket remote forward (`ssh -R /path:...`), so the key line cannot
  refuse those;
- an sshd drop-in with a `Match User` block: TCP forwarding local only, no stream-local
  forwarding, no listening, one permitted target, no TTY, no tunnel device, no shell.
  The host agent checks that sshd accepts and applies it before reloading sshd (the host
  program's `sshd_config` step, fleetctl/reconcile/resources/files.py).
"""

from __future__ import annotations

# What `sshd -T -C user=<tunnel user>,...` reports once sshd applies the drop-in: the host
# agent checks it before it reloads sshd.
SSHD_EFFECTIVE = ("allowstreamlocalforwarding no", "permitlisten none")
# A privileged port on loopback: sshd binds remote forwards as the (unprivileged) login user
# and, with GatewayPorts no, only on loopback, so the one listen the key line allows fails.
UNBINDABLE_LISTEN = "127.0.0.1:1"


def authorized_keys_options(listen: str, port: int) -> str:
    """The options in front of every tunnel key on the broker."""
    return (
        f'restrict,port-forwarding,permitopen="{listen}:{port}",'
        f'permitlisten="{UNBINDABLE_LISTEN}",command="/bin/false"'
    )


def sshd_match_block(user: str, listen: str, port: int) -> str:
    """The broker's sshd drop-in: the server-side limits of the tunnel user."""
    return (
        "# Managed by fleetctl: the tunnel user may forward to the NATS port and nothing else.\n"
        f"Match User {user}\n"
        "\tAllowTcpForwarding local\n"
        "\tAllowStreamLocalForwarding no\n"
        f"\tPermitOpen {listen}:{port}\n"
        "\tPermitListen none\n"
        "\tGatewayPorts no\n"
        "\tPermitTTY no\n"
        "\tPermitTunnel no\n"
        "\tX11Forwarding no\n"
        "\tAllowAgentForwarding no\n"
        "\tPermitUserRC no\n"
        "\tAuthenticationMethods publickey\n"
        "\tForceCommand /bin/false\n"
    )
