"""Which tunnels a host keeps to the brokers, and the NATS URLs its pollers connect with.

NATS listens only on each broker's loopback, so a host with workers reaches a broker
through an autossh tunnel: its `127.0.0.1:<port>` forwarded to the broker's NATS port.
With one broker that is `fleet-tunnel.service` on `nats.port` (none on the broker itself).
A cluster's hosts keep one tunnel per broker, `fleet-tunnel-<broker>.service` on
`nats.port + i` for the i-th broker in servers.yaml order (from 1), so the ports never meet
a broker's own `nats.port`; a broker host with workers reaches its own nats-server directly
and the others through tunnels. Pollers get every URL: losing one broker or one tunnel is a
reconnect to another. Pure; read by desired state (units, keys, the poller's environment),
the inputs (which hosts need a tunnel key) and `fleetctl up`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetctl import layout
from fleetctl.config.model import Fleet, Host


@dataclass(frozen=True)
class Tunnel:
    """A host's tunnel to one broker: its unit, and the local port it listens on."""

    broker: Host
    unit: str
    port: int


def tunnels_of(fleet: Fleet, host: Host) -> tuple[Tunnel, ...]:
    """The tunnels `host` keeps: none without an enabled worker."""
    if not (host.is_worker_host and fleet.workers_on(host.name)):
        return ()
    if not fleet.is_cluster:
        return (
            () if host.is_broker else (Tunnel(fleet.broker, layout.TUNNEL_UNIT, fleet.nats.port),)
        )
    return tuple(
        Tunnel(broker, tunnel_unit(broker.name), fleet.nats.port + i)
        for i, broker in enumerate(fleet.brokers, 1)
        if broker.name != host.name
    )


def tunnel_unit(broker: str) -> str:
    """A cluster host's tunnel to `broker`."""
    return f"fleet-tunnel-{broker}.service"


def tunnel_hosts(fleet: Fleet) -> list[str]:
    """The hosts that dial a broker (each has one tunnel key, whatever its tunnels)."""
    return [h.name for h in fleet.hosts if tunnels_of(fleet, h)]


def dialers_of(fleet: Fleet, broker: str) -> list[str]:
    """The hosts with a tunnel to `broker`: whose keys its tunnel login accepts."""
    return [
        h.name for h in fleet.hosts if any(t.broker.name == broker for t in tunnels_of(fleet, h))
    ]


def nats_urls(fleet: Fleet, host: Host) -> list[str]:
    """What a poller on `host` connects to: its own broker first (if it is one), then each
    tunnel in broker order."""
    own = [f"nats://{fleet.nats.listen}:{fleet.nats.port}"] if host.is_broker else []
    return own + [f"nats://127.0.0.1:{t.port}" for t in tunnels_of(fleet, host)]
