"""Judgments: a person's verdict on one worker's answer to a task (docs/dashboard.md).

`pick` (the answer to keep: at most one a task), `pass` or `fail`, with a comment. Stored
in the KV bucket `<PREFIX>_JUDGMENTS`, key `<task_id>.<worker_id>`, written only by the
dashboard's identity (docs/security.md); `results` reads a task's judgments by subject.
Parsing is strict: a reader checks what it reads, as for task records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from fleetctl.bus import taskbus
from fleetctl.bus.client import BusError
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.messages import TASK_ID, Result, TaskError

VERSION = 1
VERDICTS = ("pick", "pass", "fail")
MAX_COMMENT = 2000  # characters; the bucket keeps at most 4 KiB a judgment
WORKER_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class Judgment:
    task_id: str
    worker_id: str
    verdict: str
    comment: str
    at: str

    def as_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "comment": self.comment, "at": self.at}

    def encode(self) -> bytes:
        body = {"version": VERSION, "task_id": self.task_id, "worker_id": self.worker_id}
        return json.dumps(body | self.as_json(), ensure_ascii=False).encode()


def check(task_id: str, worker_id: str, verdict: str, comment: str) -> None:
    """TaskError saying what is wrong with a judgment before anything is written."""
    if not TASK_ID.fullmatch(task_id):
        raise TaskError(f"not a task id: {task_id!r}")
    if not worker_id or not set(worker_id) <= WORKER_ID_CHARS:
        raise TaskError(f"not a worker id: {worker_id!r}")
    if verdict not in VERDICTS:
        raise TaskError(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
    if len(comment) > MAX_COMMENT:
        raise TaskError(f"the comment has {len(comment)} characters; at most {MAX_COMMENT}")


def parse(task_id: str, worker_id: str, data: bytes) -> Judgment | None:
    """The judgment stored under (task, worker), or None when it is not one."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("version") != VERSION:
        return None
    verdict, comment, at = body.get("verdict"), body.get("comment"), body.get("at")
    if body.get("task_id") != task_id or body.get("worker_id") != worker_id:
        return None
    if verdict not in VERDICTS or not isinstance(comment, str) or not isinstance(at, str):
        return None
    return Judgment(task_id, worker_id, verdict, comment[:MAX_COMMENT], at)


async def of_task(conn: Connection, task_id: str) -> dict[str, Judgment]:
    """A task's judgments by worker (one batched direct get by subject); {} when the bus
    has no judgments bucket yet or these creds may not read it (creds issued before
    judgments: not asked, `fleetctl apply` or `creds init` issues new ones)."""
    found = await of_tasks(conn, [task_id])
    return found.get(task_id, {})


async def of_tasks(conn: Connection, task_ids: Sequence[str]) -> dict[str, dict[str, Judgment]]:
    """Several tasks' judgments: task -> worker -> judgment."""
    n = conn.names
    prefix = f"$KV.{n.judgment_bucket}."
    out: dict[str, dict[str, Judgment]] = {}
    if not conn.reads_judgments:
        return out
    for i in range(0, len(task_ids), 100):
        subjects = [n.judgment(t, "*") for t in task_ids[i : i + 100]]
        try:
            batch = await taskbus.direct_batch(
                conn.nc, n.judgment_stream, {"multi_last": subjects, "batch": 1000}
            )
        except BusError:
            return out
        for m in batch:
            task, _, worker = m.subject.removeprefix(prefix).partition(".")
            judged = parse(task, worker, m.data)
            if judged is not None:
                out.setdefault(task, {})[worker] = judged
    return out


async def every(conn: Connection) -> list[Judgment]:
    """Every stored judgment, oldest first (the dashboard's score table, read once when it
    starts; then it follows new ones)."""
    n = conn.names
    prefix = f"$KV.{n.judgment_bucket}."
    body: dict[str, Any] = {"seq": 1, "next_by_subj": n.all_judgments, "batch": taskbus.BATCH}
    out: list[Judgment] = []
    if not conn.reads_judgments:
        return out
    try:
        while batch := await taskbus.direct_batch(conn.nc, n.judgment_stream, body):
            for m in batch:
                task, _, worker = m.subject.removeprefix(prefix).partition(".")
                judged = parse(task, worker, m.data)
                if judged is not None:
                    out.append(judged)
            body = {"seq": batch[-1].seq + 1, "next_by_subj": n.all_judgments}
            body["batch"] = taskbus.BATCH
    except BusError:
        return out
    return out


async def store(conn: Connection, judgment: Judgment, earlier: Mapping[str, Judgment]) -> None:
    """Write a judgment; a pick takes the place of the task's earlier pick, which becomes
    a pass (its comment kept): a task has one pick."""
    check(judgment.task_id, judgment.worker_id, judgment.verdict, judgment.comment)
    n = conn.names
    writes = [judgment]
    if judgment.verdict == "pick":
        writes += [
            Judgment(j.task_id, j.worker_id, "pass", j.comment, judgment.at)
            for w, j in sorted(earlier.items())
            if j.verdict == "pick" and w != judgment.worker_id
        ]
    for j in writes:
        subject = n.judgment(j.task_id, j.worker_id)
        try:
            reply = await conn.nc.request(subject, j.encode(), timeout=5)
        except Exception as e:
            raise BusError(f"writing {subject}: {type(e).__name__}") from None
        ack = json.loads(reply.data or b"{}")
        if "error" in ack:
            raise BusError(f"writing {subject}: {ack['error'].get('description')}")


@dataclass
class Score:
    """One worker's record across the judged tasks, with its median cost and time."""

    worker_id: str
    picks: int = 0
    passes: int = 0
    fails: int = 0
    judged: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "picks": self.picks,
            "passes": self.passes,
            "fails": self.fails,
            "judged": self.judged,
        }


def scores(
    judged: Iterable[Judgment], results: Iterable[tuple[str, Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Per worker: picks, passes, failures, and the median cost and duration of its
    results (`results`: (worker, result body))."""
    table: dict[str, Score] = {}
    for j in judged:
        s = table.setdefault(j.worker_id, Score(j.worker_id))
        s.judged += 1
        s.picks += j.verdict == "pick"
        s.passes += j.verdict == "pass"
        s.fails += j.verdict == "fail"
    costs: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {}
    for worker, body in results:
        table.setdefault(worker, Score(worker))
        cost, took = body.get("cost_usd"), body.get("duration_s")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            costs.setdefault(worker, []).append(float(cost))
        if isinstance(took, int | float) and not isinstance(took, bool):
            times.setdefault(worker, []).append(float(took))
    out = []
    for w in sorted(table):
        row = table[w].as_json()
        row["median_cost_usd"] = round(median(costs[w]), 6) if w in costs else None
        row["median_duration_s"] = round(median(times[w]), 3) if w in times else None
        out.append(row)
    return out


def with_judgments(results: Sequence[Result], judged: Mapping[str, Judgment]) -> list[Result]:
    """The results, each with its worker's judgment (from the bucket, never the body)."""
    from dataclasses import replace

    return [
        replace(r, judgment=judged[r.worker_id].as_json() if r.worker_id in judged else None)
        for r in results
    ]
