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
    prefix = INBOX_PREFIXES[user]
    if options.creds is not None and not options.server:
        raise BusError(
            "--creds (FLEETCTL_NATS_CREDS) needs --server URL (FLEETCTL_NATS_URL) as well"
        )
    if options.server:
        if options.creds is not None and not options.creds.is_file():
            raise BusError(f"the creds file {options.creds} does not exist")
        yield at(options.server, Identity(user, options.creds, prefix))
        return
    local = local_fleet(fleet_path)
    if local is not None:
        yield at(local.nats_url, Identity(user, local.creds.get(user), prefix))
        return
    yield from _through_broker(fleet, options, user)


def _through_broker(fleet: Fleet, options: BusOptions, user: str) -> Iterator[Endpoint]:
    from contextlib import ExitStack

    from fleetctl.reconcile import sessions
    from fleetctl.transport.base import TransportError

    who = identity(fleet, user)
    failed = []
    for broker in fleet.brokers:  # any of the bus's hosts will do: the first that answers
        with ExitStack() as stack:
            try:
                transport = sessions.connect(broker, options.ssh)
                stack.callback(transport.close)
                endpoint = stack.enter_context(through(transport, fleet, who))
            except TransportError as e:
                failed.append(f"cannot reach the broker {broker.name} over SSH: {e}")
                continue
            yield endpoint
            return
    raise BusError("; ".join(failed))
