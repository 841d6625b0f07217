"""Which workers are running now: a worker runs when its poller answers a ping (its status
heartbeat, sent on demand) within PING_TIMEOUT. A poller answers at once, busy or idle; with
nobody subscribed the server says so at once (no responders), so only a worker whose
connection hangs costs the whole timeout. Read as the publisher, which may ping a worker
and nothing more (docs/security.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence

from fleetctl.tasks.connection import Connection

PING_TIMEOUT = 1.5  # a live poller answers in milliseconds, over a tunnel in tens of them


async def answering(
    conn: Connection, workers: Sequence[str], timeout: float = PING_TIMEOUT
) -> set[str]:
    """The workers whose poller answered a ping with a state other than `stopped`."""

    async def one(worker: str) -> str | None:
        with contextlib.suppress(Exception):  # no answer in time, no responders
            reply = await conn.nc.request(conn.names.ping(worker), b"", timeout=timeout)
            beat = json.loads(reply.data)
            if isinstance(beat, dict) and beat.get("state") != "stopped":
                return worker
        return None

    found = await asyncio.gather(*(one(w) for w in dict.fromkeys(workers)))
    return {w for w in found if w is not None}
