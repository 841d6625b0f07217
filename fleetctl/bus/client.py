"""A connection to the fleet's bus as one of its users, for every command that talks to it.

`plan` and `apply` read and change the bus as `fleet-admin`; task commands publish as
`fleet-publisher`. Each fleet user may use only its own inbox prefix (the server refuses
the default `_INBOX.`), so the identity carries it. The bus is reached either through an
SSH forward over the broker host's connection (`through`) or at a URL (`at`).

nats.py and asyncio are imported where they are used: together they are a tenth of
fleetctl's start-up, and a live plan needs them only in the broker's thread, where the
import overlaps the other hosts' round trips.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fleetctl.config.model import Fleet
from fleetctl.transport.base import Transport

TIMEOUT = 5.0

T = TypeVar("T")


class BusError(Exception):
    """The bus refused or did not answer a request; the message says which and why."""


class BusUnreachable(BusError):
    """Nothing answers at the bus's address (yet)."""


@dataclass(frozen=True)
class Identity:
    """Who fleetctl is on the bus: a fleet user, its creds file (None while the fleet has
    no operator and the broker accepts anyone) and the inbox prefix it may subscribe to."""

    user: str
    creds: Path | None
    inbox_prefix: str


@dataclass(frozen=True)
class Endpoint:
    url: str
    identity: Identity


@contextmanager
def through(transport: Transport, fleet: Fleet, who: Identity) -> Iterator[Endpoint]:
    """The bus through an SSH forward to the broker's NATS port, over `transport`'s
    connection (NATS listens only on the broker's loopback)."""
    with transport.forward(fleet.nats.listen, fleet.nats.port) as port:
        yield Endpoint(f"nats://127.0.0.1:{port}", who)


def at(url: str, who: Identity) -> Endpoint:
    return Endpoint(url, who)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one bus conversation from synchronous code."""
    import asyncio

    return asyncio.run(coroutine)


async def pause(seconds: float = 0.2) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def connect(endpoint: Endpoint) -> Any:
    """A nats.py client, connected once (no reconnects: a command fails, it does not wait).
    Several URLs (a local cluster's brokers, `fleetctl up --brokers 3`, comma-separated)
    are tried one after another, in random order: nats.py gives up at the first that
    accepts the connection and then says nothing (a broker that hangs), where it should
    try the next."""
    import random

    urls = endpoint.url.split(",")
    random.shuffle(urls)
    failures = []
    for url in urls:
        try:
            return await _connect_one(url, endpoint)
        except BusUnreachable as e:
            failures.append(str(e))
    if len(urls) == 1:
        raise BusUnreachable(failures[0])
    raise BusUnreachable(f"nothing answers at {endpoint.url} ({'; '.join(failures)})")


async def _connect_one(url: str, endpoint: Endpoint) -> Any:
    who = endpoint.identity
    opts: dict[str, Any] = {
        "servers": [url],
        "allow_reconnect": False,
        "connect_timeout": TIMEOUT,
        # nats.py reads 0 as "no limit" while making the first connection (it retried an
        # unreachable URL for ever): 1 gives up after one more try.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.1,
        "inbox_prefix": who.inbox_prefix,
    }
    if who.creds is not None:
        opts["user_credentials"] = str(who.creds)

    async def quiet(_: Exception) -> None:
        return None

    opts["error_cb"] = quiet
    import nats
    from nats.errors import AuthorizationError, NoServersError
    from nats.errors import Error as NatsError

    from poller.inboxes import unpredictable_inboxes

    try:
        nc = await nats.connect(**opts)
    except AuthorizationError:
        raise BusError(f"the broker refused the credentials of {who.user}") from None
    except (NoServersError, OSError, TimeoutError, NatsError) as e:
        why = str(e).strip() or type(e).__name__
        raise BusUnreachable(f"nothing answers at {url} ({why})") from None
    # Its inbox names, like the poller's, predict nothing: where the monitor shows one, a
    # worker could otherwise aim answers at the next (docs/security.md, "Attack replay").
    unpredictable_inboxes(nc)
    return nc


async def request(nc: Any, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON request and its JSON reply."""
    payload = json.dumps(body).encode() if body is not None else b""
    try:
        msg = await nc.request(subject, payload, timeout=TIMEOUT)
    except Exception as e:
        raise BusError(f"no answer to {subject}: {type(e).__name__}") from None
    reply: dict[str, Any] = json.loads(msg.data)
    return reply
