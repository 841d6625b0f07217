"""Sending: one copy of a task per target (or one on a route's shared queue), each with its
own Nats-Msg-Id, then the task's record of what the bus stored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fleetctl.bus import taskbus
from fleetctl.bus.client import BusError
from fleetctl.config.routes import queues
from fleetctl.tasks import messages as taskmsg
from fleetctl.tasks import record as taskrecord
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.record import Sent, Target

RECORD_TRIES = 20  # compare-and-set writes of one record before giving up (concurrent sends)


async def enqueue(
    conn: Connection,
    task_id: str,
    data: bytes,
    route: str,
    repo: str | None = None,
    ref: str | None = None,
) -> Sent:
    """One copy on the route's shared queue: the first free member takes it."""
    members = queues(conn.fleet)[route]
    msg_id = taskmsg.dedup_id(task_id, conn.names.route_consumer(route))
    ack = await taskbus.publish(conn.nc, conn.names.route_inbox(route), data, msg_id)
    copy = Target("", msg_id, ack.seq, ack.duplicate, route, members)
    why = await record(conn, task_id, data, (copy,), route, repo, ref)
    return Sent(task_id, (copy,), record_error=why)


async def publish(
    conn: Connection,
    task_id: str,
    data: bytes,
    workers: Sequence[str],
    tag: str = "",
    route: str | None = None,
    repo: str | None = None,
    ref: str | None = None,
) -> Sent:
    """Publish an encoded task to each of `workers` (already checked), then record the
    copies the bus stored (also when another copy failed: that error is raised after the
    record is written)."""

    async def one(worker: str) -> Target:
        msg_id = taskmsg.dedup_id(task_id, worker) + tag
        ack = await taskbus.publish(conn.nc, conn.names.inbox(worker), data, msg_id)
        return Target(worker, msg_id, ack.seq, ack.duplicate)

    copies = await asyncio.gather(*(one(w) for w in workers), return_exceptions=True)
    stored = tuple(c for c in copies if isinstance(c, Target))
    why = await record(conn, task_id, data, stored, route, repo, ref) if stored else None
    failed = next((c for c in copies if isinstance(c, BaseException)), None)
    if failed is not None:
        raise failed
    return Sent(task_id, stored, record_error=why)


async def record(
    conn: Connection,
    task_id: str,
    data: bytes,
    copies: Sequence[Target],
    route: str | None,
    repo: str | None = None,
    ref: str | None = None,
) -> str | None:
    """Write the task's record, or extend the one an earlier send of the same id wrote
    (compare-and-set, so concurrent sends lose no target). Why it could not be written,
    or None. Written after the copies were stored: it names what the bus holds."""
    if conn.unrecordable is not None:
        return conn.unrecordable
    n = conn.names
    new = taskrecord.new(task_id, data, copies, conn.sender, route=route, repo=repo, ref=ref)
    subject, seq, merged = n.record(task_id), 0, new
    try:
        for _ in range(RECORD_TRIES):
            try:
                await taskbus.put(conn.nc, subject, merged.encode(), seq)
                return None
            except taskbus.WrongLastSequence:
                stored = await taskbus.direct_get(conn.nc, n.record_stream, subject)
                earlier = taskrecord.parse(task_id, stored.data) if stored else None
                seq = stored.seq if stored else 0
                merged = earlier.merged(new) if earlier else new
    except taskbus.NoStream:
        return f"the bus has no {n.record_stream} bucket yet: `fleetctl apply` creates it"
    except BusError as e:
        return str(e)
    return f"{subject} was written by other sends {RECORD_TRIES} times in a row"
