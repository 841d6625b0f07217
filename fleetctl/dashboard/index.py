"""What the Tasks page lists, kept in memory: every task record and a summary of every
result, read once when the dashboard starts and then kept current from the bus's own
messages as they are published (fleetctl/tasks/following.py). A page is a filter and a
slice of this, never a scan of the streams. Pure: fed by the caller, thread-safe."""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.tasks import record as taskrecord
from fleetctl.tasks.judgments import Judgment, scores
from fleetctl.tasks.judgments import parse as parse_judgment
from fleetctl.tasks.ledger import StoredResult
from fleetctl.tasks.record import TaskRecord

WAITING = "waiting"  # a target without a result: queued or running (the Task page says which)
KEPT = ("status", "cost_usd", "duration_s", "usage", "model", "llm", "started_at", "ended_at")


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the list, the ledger and the score table need of a result."""
    return {k: body[k] for k in KEPT if k in body}


@dataclass(frozen=True)
class Row:
    """One line of the Tasks page."""

    task_id: str
    at: str
    sender: str
    repo: str | None
    targets: tuple[tuple[str, str], ...]  # (worker or route:NAME, status)
    unsolicited: tuple[tuple[str, str], ...]
    cost_usd: float | None

    @property
    def statuses(self) -> set[str]:
        return {s for _, s in self.targets}


@dataclass(frozen=True)
class Filters:
    worker: str = ""
    status: str = ""
    repo: str = ""
    text: str = ""

    def active(self) -> bool:
        return bool(self.worker or self.status or self.repo or self.text)


@dataclass
class _Entry:
    record: TaskRecord | None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


class TaskIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._order: list[tuple[str, str]] = []  # (at, task id) of recorded tasks, oldest first
        self._judgments: dict[tuple[str, str], Judgment] = {}
        self._rows: dict[str, Row] = {}  # each task's row, made again only when it changed
        self._workers: set[str] = set()
        self._repos: set[str] = set()
        self.version = 0  # bumped on every change (the live view's cursor)

    # ---- feeding -------------------------------------------------------------------------

    def load(
        self,
        records: Iterable[TaskRecord],
        results: Iterable[StoredResult],
        judged: Iterable[Judgment] = (),
    ) -> None:
        for r in records:
            self.add_record(r)
        for s in results:
            self.add_result(s.worker_id, s.task_id, s.body)
        for j in judged:
            self.add_judgment(j)
        with self._lock:  # every row made once now, not by the first filtered page
            for _, task_id in self._order:
                self._row(task_id)

    def add_record(self, record: TaskRecord) -> None:
        with self._lock:
            entry = self._entries.setdefault(record.task_id, _Entry(None))
            if entry.record is not None:
                self._order.remove((entry.record.at, record.task_id))
            entry.record = record
            bisect.insort(self._order, (record.at, record.task_id))
            self._workers.update(w for t in record.targets for w in t.workers)
            if record.repo:
                self._repos.add(record.repo)
            self._rows.pop(record.task_id, None)
            self.version += 1

    def add_result(self, worker_id: str, task_id: str, body: Mapping[str, Any]) -> None:
        with self._lock:
            entry = self._entries.setdefault(task_id, _Entry(None))
            entry.results[worker_id] = slim(body)
            self._workers.add(worker_id)
            self._rows.pop(task_id, None)
            self.version += 1

    def add_judgment(self, judged: Judgment) -> None:
        with self._lock:
            self._judgments[(judged.task_id, judged.worker_id)] = judged
            self.version += 1

    def apply(self, kind: str, task_id: str, worker_id: str | None, data: bytes) -> bool:
        """One message the dashboard follows (fleetctl/tasks/following.py); whether it
        was one the index keeps."""
        if kind == "record":
            record = taskrecord.parse(task_id, data)
            if record is not None:
                self.add_record(record)
            return record is not None
        if kind == "result" and worker_id:
            try:
                body = json.loads(data)
            except ValueError:
                return False
            if isinstance(body, dict):
                self.add_result(worker_id, task_id, body)
                return True
            return False
        if kind == "judgment" and worker_id:
            judged = parse_judgment(task_id, worker_id, data)
            if judged is not None:
                self.add_judgment(judged)
            return judged is not None
        return False

    # ---- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._order)

    def page(self, filters: Filters, number: int, size: int) -> tuple[list[Row], int]:
        """Page `number` (from 1) of the recorded tasks that pass `filters`, newest first,
        and how many pass in all."""
        with self._lock:
            if not filters.active():
                total = len(self._order)
                end = total - (number - 1) * size
                chosen = self._order[max(0, end - size) : max(0, end)]
                return [self._row(t) for _, t in reversed(chosen)], total
            rows = [self._row(t) for _, t in reversed(self._order)]
        passing = [r for r in rows if _passes(r, filters)]
        start = (number - 1) * size
        return passing[start : start + size], len(passing)

    def row(self, task_id: str) -> Row | None:
        with self._lock:
            return self._row(task_id) if task_id in self._entries else None

    def _row(self, task_id: str) -> Row:
        row = self._rows.get(task_id)
        if row is None:
            row = self._rows[task_id] = self._make_row(task_id)
        return row

    def _make_row(self, task_id: str) -> Row:
        entry = self._entries[task_id]
        record = entry.record
        targets: list[tuple[str, str]] = []
        answered = entry.results
        if record is not None:
            for t in record.targets:
                mine = [w for w in t.workers if w in answered]
                for w in mine or [t.key]:
                    status = answered[w]["status"] if w in answered else WAITING
                    if (w, status) not in targets:
                        targets.append((w, str(status)))
        others = tuple(
            (w, str(b.get("status", "?")))
            for w, b in sorted(answered.items())
            if record is not None and not record.solicited(w)
        )
        costs = [
            float(b["cost_usd"])
            for b in answered.values()
            if isinstance(b.get("cost_usd"), int | float) and not isinstance(b["cost_usd"], bool)
        ]
        sender = ""
        if record is not None:
            sender = record.sender.login or record.sender.user or ""
        return Row(
            task_id,
            record.at if record is not None else "",
            sender,
            record.repo if record is not None else None,
            tuple(targets),
            others,
            round(sum(costs), 6) if costs else None,
        )

    def workers(self) -> list[str]:
        with self._lock:
            return sorted(self._workers)

    def repos(self) -> list[str]:
        with self._lock:
            return sorted(self._repos)

    def stored_results(self) -> list[StoredResult]:
        """Every result's summary, as the cost ledger reads stored results."""
        with self._lock:
            return [
                StoredResult(w, t, body)
                for t, e in self._entries.items()
                for w, body in e.results.items()
            ]

    def scores(self) -> list[dict[str, Any]]:
        """Per worker: picks, passes, failures, median cost and time (judgments.scores)."""
        with self._lock:
            judged = list(self._judgments.values())
            bodies = [(w, b) for e in self._entries.values() for w, b in e.results.items()]
        return scores(judged, bodies)


def _passes(row: Row, f: Filters) -> bool:
    names = {w for w, _ in row.targets} | {w for w, _ in row.unsolicited}
    if f.worker and f.worker not in names:
        return False
    if f.status and f.status not in row.statuses | {s for _, s in row.unsolicited}:
        return False
    if f.repo and row.repo != f.repo:
        return False
    if f.text:
        needle = f.text.lower()
        hay = " ".join([row.task_id, row.sender, row.repo or "", *names]).lower()
        if needle not in hay:
            return False
    return True
