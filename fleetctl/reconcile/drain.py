"""A departing worker's queued tasks become dead letters before its consumer goes.

Done as that worker, with its creds from the store: a worker may pull from its own consumer,
ack, and publish its own dead letters, which is all this needs, so no fleet identity gains a
right to read tasks. It runs before the broker's wave, whose config revokes the departing
worker. The dead letters have the poller's shape (docs/messages.md), reason "worker
removed", so `fleetctl dead replay` can send them to another worker.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from fleetctl.bus.client import BusError, Endpoint, Identity, connect, run
from fleetctl.bus.names import NatsNames
from fleetctl.identity.natsaccess import worker_user

REASON = "worker removed from the fleet: dead-lettered by fleetctl apply before its consumer"
BATCH = 100
KEEP = 512 * 1024  # the poller keeps a task's bytes in its dead letter up to this size


def identity_of(worker_id: str, creds: Path) -> Identity:
    return Identity(worker_user(worker_id), creds, NatsNames.inbox_prefix(worker_id))


def dead_letter(worker_id: str, stream: str, msg: Any) -> bytes:
    """The poller's dead-letter record for a task it never ran."""
    try:
        task_id = json.loads(msg.data).get("task_id")
    except (ValueError, AttributeError):
        task_id = None
    meta = msg.metadata
    record: dict[str, Any] = {
        "version": 1,
        "worker_id": worker_id,
        "task_id": task_id if isinstance(task_id, str) else None,
        "reason": REASON,
        "attempt": meta.num_delivered,
        "stream": stream,
        "stream_seq": meta.sequence.stream,
        "subject": msg.subject,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task_bytes": len(msg.data),
    }
    if len(msg.data) <= KEEP:
        record["task_b64"] = base64.b64encode(msg.data).decode()
    return json.dumps(record).encode()


async def _drain(endpoint: Endpoint, prefix: str, worker_id: str) -> int:
    names = NatsNames(prefix)
    nc = await connect(endpoint)
    moved = 0
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe_bind(names.consumer(worker_id), names.task_stream)
        while True:
            try:
                batch = await sub.fetch(BATCH, timeout=1.0)
            except Exception:  # nothing left within the timeout
                return moved
            for msg in batch:
                data = dead_letter(worker_id, names.task_stream, msg)
                try:
                    await js.publish(names.dead(worker_id), data, stream=names.dead_stream)
                    await msg.ack_sync()
                except Exception as e:  # the task stays queued; apply reports the host
                    why = f"{type(e).__name__}: {e}".rstrip(": ")
                    raise BusError(f"dead-lettering a task of {worker_id}: {why}") from None
                moved += 1
    finally:
        await nc.close()


def drain(endpoint: Endpoint, prefix: str, worker_id: str) -> int:
    """Move every task queued on the worker's consumer to its dead letters; how many."""
    return run(_drain(endpoint, prefix, worker_id))
