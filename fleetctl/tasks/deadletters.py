"""Dead letters: the tasks a worker gave up on, as the dead-letter stream keeps them (the
original task, the reason, the attempt), read one or all, found for one task, purged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetctl.bus import taskbus
from fleetctl.tasks.connection import Connection


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    worker_id: str
    body: Mapping[str, Any]

    @property
    def task_id(self) -> str | None:
        value = self.body.get("task_id")
        return value if isinstance(value, str) else None

    def task(self) -> bytes | None:
        """The original task exactly as received (None when it was too large to keep)."""
        import base64

        raw = self.body.get("task_b64")
        return base64.b64decode(raw) if isinstance(raw, str) else None

    def as_json(self) -> dict[str, Any]:
        keys = ("task_id", "reason", "attempt", "at", "task_bytes")
        return {"seq": self.seq, "worker_id": self.worker_id} | {k: self.body.get(k) for k in keys}


async def dead_letters(conn: Connection, worker: str | None = None) -> list[DeadLetter]:
    """Every dead letter (of one worker), oldest first."""
    n = conn.names
    subjects = n.dead(worker) if worker else n.all_dead
    out = []
    for m in await taskbus.scan(conn.nc, n.dead_stream, subjects):
        body = m.json()
        if isinstance(body, dict):
            out.append(DeadLetter(m.seq, m.subject.split(".")[-1], body))
    return out


async def dead_letter(conn: Connection, seq: int) -> DeadLetter | None:
    """The dead letter stored at `seq`, or None."""
    n = conn.names
    m = await taskbus.msg_get(conn.nc, n.dead_stream, {"seq": seq})
    body = m.json() if m is not None else None
    if m is None or not isinstance(body, dict):
        return None
    return DeadLetter(m.seq, m.subject.split(".")[-1], body)


async def purge(conn: Connection, worker: str | None = None) -> int:
    """Remove the dead letters (of one worker); how many were removed."""
    n = conn.names
    return await taskbus.purge(conn.nc, n.dead_stream, n.dead(worker) if worker else None)


class DeadLetters:
    """Dead letters by (worker, task), each worker's read at most once: first its newest
    (a task just given up on is it), then, if that is another task's, all of them."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._read: dict[str, list[DeadLetter]] = {}

    async def find(self, workers: Sequence[str], task_id: str) -> DeadLetter | None:
        conn, n = self._conn, self._conn.names
        for w in workers:
            if w not in self._read:
                newest = await taskbus.msg_get(conn.nc, n.dead_stream, {"last_by_subj": n.dead(w)})
                body = newest.json() if newest is not None else None
                if newest is not None and isinstance(body, dict) and body.get("task_id") == task_id:
                    return DeadLetter(newest.seq, w, body)
                self._read[w] = await dead_letters(conn, w) if newest is not None else []
            hit = next((d for d in reversed(self._read[w]) if d.task_id == task_id), None)
            if hit is not None:
                return hit
        return None
