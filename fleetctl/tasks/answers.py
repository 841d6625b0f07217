"""One task's answers as `fleetctl results` shows them: its record, each target's answer or
where its copy is, then every other worker's answer, marked unsolicited."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fleetctl.bus import taskbus
from fleetctl.tasks import judgments
from fleetctl.tasks import messages as taskmsg
from fleetctl.tasks import record as taskrecord
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.judgments import with_judgments
from fleetctl.tasks.messages import Result
from fleetctl.tasks.record import Target, TaskRecord
from fleetctl.tasks.whereabouts import results_of, whereabouts


class NoSuchTask(taskmsg.TaskError):
    """The bus has neither a record nor a result of this task id."""


@dataclass(frozen=True)
class Answers:
    """One task as `fleetctl results` shows it: its record (None when there is none, and
    `note` says why), each target's answer or where its copy is, then every other worker's
    answer marked unsolicited. Without a record: every stored answer, unchecked
    (`unsolicited` None)."""

    task_id: str
    record: TaskRecord | None
    results: list[Result]
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        """`fleetctl results --json` and the dashboard's `/api/tasks/{id}`."""
        listed = taskmsg.results_json(self.task_id, self.results)
        record = self.record.as_json() if self.record is not None else None
        body = {"version": listed["version"], "task_id": self.task_id, "record": record}
        body["results"] = listed["results"]
        return body


async def record_of(conn: Connection, task_id: str) -> tuple[TaskRecord | None, str | None]:
    """The task's record, or None and why there is none."""
    taskmsg.check_task_id(task_id)
    n = conn.names
    if conn.unreadable is not None:
        return None, conn.unreadable
    try:
        stored = await taskbus.direct_get(conn.nc, n.record_stream, n.record(task_id))
    except taskbus.NoStream:
        return None, f"the bus has no {n.record_stream} bucket yet: `fleetctl apply` creates it"
    if stored is None:
        return (
            None,
            "no record of it: sent before this fleet kept task records, or not by fleetctl",
        )
    record = taskrecord.parse(task_id, stored.data)
    return record, None if record is not None else "its record is not one fleetctl can read"


async def answers(conn: Connection, task_id: str) -> Answers:
    """The task's record and its results, by subject, whatever else the window holds;
    NoSuchTask when the bus has neither."""
    record, note = await record_of(conn, task_id)
    found = await results_of(conn, [task_id])
    if record is None:
        if not found:
            raise NoSuchTask(f"no such task: {task_id} (the bus has no record of it and no result)")
        stored = [replace(r, unsolicited=None) for r in found.values()]
        judged = await judgments.of_task(conn, task_id)
        listed = with_judgments(sorted(stored, key=lambda r: r.worker_id), judged)
        return Answers(task_id, None, listed, note)
    out: list[Result] = []
    waiting: list[tuple[str, Target]] = []
    for t in record.targets:
        mine = [found[(w, task_id)] for w in t.workers if (w, task_id) in found]
        out += mine
        if not mine:
            waiting.append((task_id, t))
    where = await whereabouts(conn, waiting)
    out += [where[(t.key, task_id)] for _, t in waiting]
    others = [r for (w, _), r in sorted(found.items()) if not record.solicited(w)]
    listed = out + [replace(r, unsolicited=True) for r in others]
    return Answers(task_id, record, with_judgments(listed, await judgments.of_task(conn, task_id)))
