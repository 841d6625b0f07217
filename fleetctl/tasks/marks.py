"""Cancel marks: one key per (worker, task) in the cancels bucket `<PREFIX>_CANCELS`, written by
the publisher (fleetctl/tasks/cancelling.py) and read by the worker in the key before and while
it runs the task (poller/cancel.py). Here: writing one, and whether a copy has one."""

from __future__ import annotations

import json

from fleetctl.bus import taskbus
from fleetctl.bus.client import BusError
from fleetctl.tasks import record as taskrecord
from fleetctl.tasks.connection import Connection

QUEUED_CANCELLED = (
    "cancelled while queued (fleetctl task cancel): it will not run; its worker drops it "
    "from its queue when it next takes a task"
)


async def mark(conn: Connection, worker: str, task_id: str) -> None:
    """Write the mark (once: a second cancel finds it there)."""
    n = conn.names
    body = {
        "version": 1,
        "task_id": task_id,
        "worker_id": worker,
        "at": taskrecord.now(),
        "by": conn.sender.as_json(),
    }
    try:
        await taskbus.put(conn.nc, n.cancel(worker, task_id), json.dumps(body).encode(), 0)
    except taskbus.WrongLastSequence:
        return  # cancelled before
    except taskbus.NoStream:
        raise BusError(
            f"the bus has no {n.cancel_stream} bucket yet: `fleetctl apply` creates it "
            "(and the workers' credentials that may read it: fleetctl creds rotate)"
        ) from None


async def marked(conn: Connection, worker: str, task_id: str) -> bool:
    """Is there a mark for this copy? False when it cannot be read (creds or a bus that
    predate cancels): the copy is then shown where it is, as before."""
    if not conn.cancels_readable:
        return False
    n = conn.names
    try:
        found = await taskbus.direct_get(conn.nc, n.cancel_stream, n.cancel(worker, task_id))
    except BusError:
        return False
    return found is not None
