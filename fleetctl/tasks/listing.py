"""The fleet's recent tasks (`fleetctl tasks`, from their records, with their state on each
target) and its stored results (`fleetctl costs`), read in batches by time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetctl.bus import taskbus
from fleetctl.bus.client import BusError
from fleetctl.tasks import record as taskrecord
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.ledger import StoredResult
from fleetctl.tasks.record import TaskRecord
from fleetctl.tasks.whereabouts import results_of, whereabouts


@dataclass(frozen=True)
class TaskRow:
    """A recent task (from its record) and where it stands on each of its targets, then
    the answers of workers it was never sent to (`unsolicited`)."""

    task_id: str
    at: str
    states: Mapping[str, str]
    unsolicited: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "at": self.at,
            "targets": [
                {"worker_id": w, "state": s, "unsolicited": False} for w, s in self.states.items()
            ]
            + [
                {"worker_id": w, "state": s, "unsolicited": True}
                for w, s in self.unsolicited.items()
            ],
        }


async def tasks(conn: Connection, since: float, worker: str | None) -> list[TaskRow]:
    """Tasks sent in the last `since` seconds, oldest first; with `worker`, those it was
    sent or answered."""
    records = await records_since(conn, since)
    found = await results_of(conn, [r.task_id for r in records])
    waiting = [
        (r.task_id, t)
        for r in records
        for t in r.targets
        if not any((w, r.task_id) in found for w in t.workers)
    ]
    where = await whereabouts(conn, waiting)
    rows = []
    for r in records:
        states: dict[str, str] = {}
        for t in r.targets:
            mine = [found[(w, r.task_id)] for w in t.workers if (w, r.task_id) in found]
            for got in mine or [where[(t.key, r.task_id)]]:
                states.setdefault(got.worker_id, got.status)
        answers = {w: a.status for (w, tid), a in found.items() if tid == r.task_id}
        others = {w: st for w, st in sorted(answers.items()) if not r.solicited(w)}
        if worker is None or r.solicited(worker) or worker in answers:
            rows.append(TaskRow(r.task_id, r.at, dict(sorted(states.items())), others))
    return sorted(rows, key=lambda row: row.at)


async def records_since(conn: Connection, since: float) -> list[TaskRecord]:
    """Every readable record written (first or again) in the last `since` seconds."""
    n = conn.names
    if conn.unreadable is not None:
        raise BusError(conn.unreadable)
    start = (datetime.now(UTC) - timedelta(seconds=since)).isoformat()
    body: dict[str, Any] = {
        "start_time": start,
        "next_by_subj": n.all_records,
        "batch": taskbus.BATCH,
    }
    records = []
    prefix = n.record("")
    try:
        while batch := await taskbus.direct_batch(conn.nc, n.record_stream, body):
            for m in batch:
                record = taskrecord.parse(m.subject.removeprefix(prefix), m.data)
                if record is not None:
                    records.append(record)
            body = {"seq": batch[-1].seq + 1, "next_by_subj": n.all_records}
            body["batch"] = taskbus.BATCH
    except BusError as e:
        raise BusError(
            f"{e} (a bus without task records: `fleetctl apply` creates {n.record_stream})"
        ) from None
    return records


async def stored_results(
    conn: Connection, since: float | None, worker: str | None
) -> list[StoredResult]:
    """Every stored result (stored in the last `since` seconds), attributed by subject."""
    n = conn.names
    subjects = n.results_of(worker) if worker else n.all_results
    body: dict[str, Any] = {"next_by_subj": subjects, "batch": taskbus.BATCH}
    if since is None:
        body["seq"] = 1
    else:
        body["start_time"] = (datetime.now(UTC) - timedelta(seconds=since)).isoformat()
    found = []
    while batch := await taskbus.direct_batch(conn.nc, n.results_stream, body):
        for m in batch:
            who, result = n.attribution(m.subject), m.json()
            if who is not None and isinstance(result, dict):
                found.append(StoredResult(who[0], who[1], {"started_at": m.time, **result}))
        body = {"seq": batch[-1].seq + 1, "next_by_subj": subjects, "batch": taskbus.BATCH}
    return found
