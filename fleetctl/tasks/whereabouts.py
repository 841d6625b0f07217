"""Where each copy of a task is: its stored result, else still queued or running on its
consumer, else dead-lettered, else lost. Read by subject and sequence, never by scanning the
results window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fleetctl.bus import taskbus
from fleetctl.tasks import activity
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.deadletters import DeadLetters
from fleetctl.tasks.marks import QUEUED_CANCELLED, marked
from fleetctl.tasks.messages import Result
from fleetctl.tasks.record import Sent, Target

MULTI_LAST = 1000  # results one batched direct get may match (nats-server: 1024, then 413)
LOST = (
    "its copy left the task stream with neither a result nor a dead letter "
    "(expired unrun, acked without a result, or its dead letter was removed)"
)


async def results_of(conn: Connection, task_ids: Sequence[str]) -> dict[tuple[str, str], Result]:
    """The stored results of these tasks, by (worker, task): batched direct gets of the
    last message on each task's subjects, as many tasks a request as can answer within
    the server's MULTI_LAST results (a task has at most one result per worker)."""
    n = conn.names
    per_request = max(1, MULTI_LAST // max(1, len(conn.fleet.workers)))
    out: dict[tuple[str, str], Result] = {}
    for i in range(0, len(task_ids), per_request):
        subjects = [n.result("*", t) for t in task_ids[i : i + per_request]]
        body = {"multi_last": subjects, "batch": MULTI_LAST}
        for m in await taskbus.direct_batch(conn.nc, n.results_stream, body):
            who, result = n.attribution(m.subject), m.json()
            if who is not None and isinstance(result, dict):
                out[who] = Result(who[0], str(result.get("status", "?")), result)
    return out


def _run_by_member(
    found: Mapping[tuple[str, str], Result], task_id: str, target: Target
) -> Result | None:
    """A route target's result: the one a member of the route stored for the task."""
    return next((found[(m, task_id)] for m in target.members if (m, task_id) in found), None)


async def progress(conn: Connection, sents: Sequence[Sent]) -> list[Result]:
    """Each target's result, or where its copy of the task is, in the order of `sents`."""
    found = await results_of(conn, list(dict.fromkeys(s.task_id for s in sents)))
    states: dict[tuple[str, str], Result] = {}
    for s in sents:
        for t in s.targets:
            got = found.get((t.worker_id, s.task_id)) or _run_by_member(found, s.task_id, t)
            if got is not None:
                states[(t.key, s.task_id)] = got
    waiting = [(s.task_id, t) for s in sents for t in s.targets if (t.key, s.task_id) not in states]
    states |= await whereabouts(conn, waiting)
    return [states[(t.key, s.task_id)] for s in sents for t in s.targets]


async def whereabouts(
    conn: Connection, waiting: Sequence[tuple[str, Target]]
) -> dict[tuple[str, str], Result]:
    """Where each (task id, target) without a result is, by its copy's sequence:
    still in the task stream (queued, or running once its consumer delivered it), else
    acked after a result or a dead letter (the poller stores either before it acks), or
    lost. Each consumer is looked at once; each worker's dead letters are read only for
    a copy that left the stream without a result, and once."""
    letters = DeadLetters(conn)
    infos: dict[str, dict[str, Any] | None] = {}
    out: dict[tuple[str, str], Result] = {}
    for task_id, target in waiting:
        key = (target.key, task_id)
        if await _queued_copy(conn, target):
            if target.key not in infos:
                infos[target.key] = await consumer(conn, target.worker_id, target.route)
            out[key] = _where(conn, task_id, target, infos[target.key])
            if out[key].status == "queued" and await _cancelled(conn, task_id, target):
                out[key] = Result(target.key, "cancelled", {"error": QUEUED_CANCELLED})
        else:
            out[key] = await _left(conn, task_id, target, letters)
    return out


async def _cancelled(conn: Connection, task_id: str, target: Target) -> bool:
    """Has this copy been cancelled (`task cancel` marks each worker that may take it)?
    Read only for a copy still queued: a running one ends in its own `cancelled` result."""
    return bool(target.workers) and await marked(conn, target.workers[0], task_id)


async def _queued_copy(conn: Connection, target: Target) -> bool:
    """Is the target's copy still in the (work queue) task stream: not yet acked?"""
    if target.stream_seq <= 0:
        return True  # not known: take it as still there
    n = conn.names
    inbox = n.inbox(target.worker_id) if target.worker_id else n.route_inbox(target.route or "")
    copy = await taskbus.msg_get(conn.nc, n.task_stream, {"seq": target.stream_seq})
    return copy is not None and copy.subject == inbox


async def _left(conn: Connection, task_id: str, target: Target, letters: DeadLetters) -> Result:
    """A copy no longer queued: its result (stored just now), its dead letter, or lost."""
    n = conn.names
    for w in target.workers:
        stored = await taskbus.direct_get(conn.nc, n.results_stream, n.result(w, task_id))
        body = stored.json() if stored is not None else None
        if isinstance(body, dict):
            return Result(w, str(body.get("status", "?")), body)
    letter = await letters.find(target.workers, task_id)
    if letter is not None:
        body = dict(letter.body) | {"status": "dead-lettered"}
        return Result(letter.worker_id, "dead-lettered", body)
    return Result(target.key, "lost", {"reason": LOST})


def _where(conn: Connection, task_id: str, target: Target, info: dict[str, Any] | None) -> Result:
    """Queued (with why, when its worker is paused) or running (with what it is doing now,
    when its worker's heartbeats are followed: tasks/activity.py)."""
    key = (target.key, task_id)
    delivered = int(((info or {}).get("delivered") or {}).get("stream_seq", 0))
    if info is None or delivered < target.stream_seq:
        pause = activity.paused(conn.beats, target.workers)
        return Result(target.key, "queued", {"paused": pause} if pause else {})
    since = conn.running_since.setdefault(key, time.monotonic())
    doing = activity.running(conn.beats, target.workers, task_id)
    body = {"activity": doing} if doing else {}
    return Result(target.key, "running", body, elapsed_s=time.monotonic() - since)


async def consumer(
    conn: Connection, worker: str, route: str | None = None
) -> dict[str, Any] | None:
    """A worker's consumer, or a route's shared queue."""
    n = conn.names
    durable = n.route_consumer(route) if route is not None else n.consumer(worker)
    return await taskbus.consumer_info(conn.nc, n.task_stream, durable)


async def load(conn: Connection, workers: Sequence[str]) -> dict[str, int]:
    """Tasks queued plus in flight on each worker's consumer."""
    infos = await asyncio.gather(*(consumer(conn, w) for w in workers))
    return {
        w: int(i.get("num_pending", 0)) + int(i.get("num_ack_pending", 0))
        for w, i in zip(workers, infos, strict=True)
        if i is not None
    }
