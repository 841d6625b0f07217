"""How a task command reaches the bus, decided once for every command and for the Python API.

In this order:
1. explicit: `--server URL` (and `--creds FILE`), or FLEETCTL_NATS_URL / FLEETCTL_NATS_CREDS,
   for a coordinator elsewhere;
2. a local fleet running for this fleet file (`fleetctl up` writes `<state dir>/up.json`
   once it is ready and `down` removes it; its supervisor must still be alive);
3. an SSH forward to the broker's NATS port (NATS listens only on the broker's loopback),
   as `fleet-publisher` with the creds from the fleet's store, through the first of the
   bus's hosts (`Fleet.brokers`) that answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fleetctl.bus.client import BusError, Endpoint, Identity, at, through
from fleetctl.bus.localfleet import local_fleet
from fleetctl.config.model import Fleet
from fleetctl.identity.fleetusers import INBOX_PREFIXES, identity
from fleetctl.identity.natsaccess import PUBLISHER_USER
from fleetctl.reconcile.sessions import Options


@dataclass(frozen=True)
class BusOptions:
    """What the user said about reaching the bus (all optional)."""

    server: str | None = None
    creds: Path | None = None
    ssh: Options = field(default_factory=Options)


def how(fleet_path: Path, options: BusOptions) -> str:
    """Which way `reach` will go, in words (for messages and the README's how-to)."""
    if options.server:
        return f"the bus at {options.server}"
    if local_fleet(fleet_path) is not None:
        return "the local fleet"
    return "an SSH forward to the broker"


@contextmanager
def reach(
    fleet: Fleet, fleet_path: Path, options: BusOptions, user: str = PUBLISHER_USER
) -> Iterator[Endpoint]:
    """The bus endpoint for `user`, by the first way that applies (module docstring).
    Raises BusError with what to do when none does."""
    with reach_as(fleet, fleet_path, options, (user,)) as endpoints:
        yield endpoints[user]


@contextmanager
def reach_as(
    fleet: Fleet, fleet_path: Path, options: BusOptions, users: tuple[str, ...]
) -> Iterator[dict[str, Endpoint]]:
    """Endpoints for each of `users` by the same way (one SSH connection, a forward each):
    the first user's always; the others' where that way has their creds (`--creds` is one
    user's, and a local fleet's up.json lists fleetctl's own)."""
    first = users[0]
    if options.creds is not None and not options.server:
        raise BusError(
            "--creds (FLEETCTL_NATS_CREDS) needs --server URL (FLEETCTL_NATS_URL) as well"
        )
    if options.server:
        if options.creds is not None and not options.creds.is_file():
            raise BusError(f"the creds file {options.creds} does not exist")
        yield {first: at(options.server, Identity(first, options.creds, INBOX_PREFIXES[first]))}
        return
    local = local_fleet(fleet_path)
    if local is not None:
        yield {
            u: at(local.nats_url, Identity(u, local.creds.get(u), INBOX_PREFIXES[u]))
            for u in users
            if u == first or u in local.creds
        }
        return
    yield from _through_broker(fleet, options, users)


# The address blocks reserved for documentation (RFC 5737, RFC 3849): the example
# servers.yaml's broker is 192.0.2.10. No host answers there, so SSH would only time out.
EXAMPLE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def is_example_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in EXAMPLE_NETWORKS)


def _example_brokers(fleet: Fleet) -> str | None:
    """Why SSH is not even tried: no local fleet runs, and every broker servers.yaml names
    is at an example address (the README's servers.yaml, not yet edited)."""
    addresses = [b.address for b in fleet.brokers]
    if not addresses or not all(is_example_address(a) for a in addresses):
        return None
    which = (
        f"broker {addresses[0]} is the example address"
        if len(addresses) == 1
        else f"brokers {', '.join(addresses)} are example addresses"
    )
    return (
        f"no local fleet is running here (fleetctl up); servers.yaml's {which} "
        "(put your broker's address there, or pass --server URL)"
    )


def _through_broker(
    fleet: Fleet, options: BusOptions, users: tuple[str, ...]
) -> Iterator[dict[str, Endpoint]]:
    """Through the first broker that answers over SSH and, on a cluster, whose nats-server
    answers too (one broker down is then a way through the next, not an error)."""
    from contextlib import ExitStack

    from fleetctl.reconcile import sessions
    from fleetctl.transport.base import TransportError

    example = _example_brokers(fleet)
    if example is not None:
        raise BusError(example)
    who = {u: identity(fleet, u) for u in users}
    failed = []
    for broker in fleet.brokers:  # any of the bus's hosts will do: the first that answers
        with ExitStack() as stack:
            try:
                transport = sessions.connect(broker, options.ssh)
                stack.callback(transport.close)
                endpoints = {
                    u: stack.enter_context(through(transport, fleet, who[u]))
                    for u in users
                    if u == users[0] or who[u].creds is not None
                }
            except TransportError as e:
                failed.append(f"cannot reach the broker {broker.name} over SSH: {e}")
                continue
            if fleet.is_cluster and not greets(endpoints[users[0]].url):
                failed.append(f"nats-server on the broker {broker.name} does not answer")
                continue
            yield endpoints
            return
    raise BusError("; ".join(failed))


def greets(url: str, timeout: float = 2.0) -> bool:
    """Does a NATS server answer at `url` (its INFO line, the first thing it sends)?"""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url.split(",")[0])
    try:
        with socket.create_connection((where.hostname or "", where.port or 4222), timeout) as s:
            s.settimeout(timeout)
            return s.recv(4) == b"INFO"
    except OSError:
        return False
