"""Following the bus as it changes: new task records, results, judgments and the workers'
heartbeats as they are published, by core subscriptions (no consumer, nothing stored,
nothing scanned). What the dashboard's live view is fed from; the dashboard's identity may
subscribe to exactly these subjects (docs/security.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetctl.tasks.connection import Connection


@dataclass(frozen=True)
class Change:
    """One message: `kind` is record, result, judgment or status (a heartbeat: no task);
    its subject names its task and worker, attributed by the server, not by the body."""

    kind: str
    task_id: str
    worker_id: str | None
    data: bytes


def parse_subject(conn: Connection, subject: str) -> tuple[str, str, str | None] | None:
    """(kind, task, worker) of a subject we follow, or None."""
    n = conn.names
    who = n.attribution(subject)
    if who is not None:
        return "result", who[1], who[0]
    record_prefix = n.record("")
    if subject.startswith(record_prefix):
        return "record", subject.removeprefix(record_prefix), None
    judged_prefix = f"$KV.{n.judgment_bucket}."
    if subject.startswith(judged_prefix):
        task, _, worker = subject.removeprefix(judged_prefix).partition(".")
        return "judgment", task, worker
    parts = subject.split(".")
    if len(parts) == 4 and subject == n.status(parts[2]):
        return "status", "", parts[2]
    return None


async def follow(conn: Connection, on_change: Callable[[Change], None]) -> list[Any]:
    """Subscribe; `on_change` is called on the connection's loop for each message. The
    subscriptions, to unsubscribe."""
    n = conn.names

    async def got(msg: Any) -> None:
        parsed = parse_subject(conn, msg.subject)
        if parsed is not None:
            on_change(Change(parsed[0], parsed[1], parsed[2], msg.data))

    subjects = (n.all_results, n.record("*"), n.judgment("*", "*"), n.status("*"))
    return [await conn.nc.subscribe(s, cb=got) for s in subjects]
