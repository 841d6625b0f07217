"""The cost ledger: stored results summed by worker, model, llm, label or day.

Costs are what each result says it cost (`cost_usd`, priced by its poller or reported by its
CLI, docs/messages.md): the ledger prices nothing itself, so its total is the sum of the
results. A result that ran but has no cost (`cost_source: unknown`) counts as unpriced;
a `rejected` result, and a `cancelled` one that never ran, ran nothing and cost nothing. A
task cancelled while it ran counts with whatever its CLI spent until it was stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BY = ("worker", "model", "llm", "label", "day")


@dataclass(frozen=True)
class StoredResult:
    """A result as stored, attributed by its subject."""

    worker_id: str
    task_id: str
    body: Mapping[str, Any]


@dataclass
class Row:
    key: str
    tasks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_tasks: int = 0

    def add(self, body: Mapping[str, Any]) -> None:
        found = body.get("usage")
        usage: Mapping[str, Any] = found if isinstance(found, dict) else {}
        self.tasks += 1
        self.input_tokens += _int(usage.get("input_tokens"))
        self.output_tokens += _int(usage.get("output_tokens"))
        cost = body.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost_usd += float(cost)
        elif not _ran_nothing(body):
            self.unpriced_tasks += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "tasks": self.tasks,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_tasks": self.unpriced_tasks,
        }


@dataclass(frozen=True)
class Ledger:
    by: str
    rows: tuple[Row, ...]

    @property
    def total_usd(self) -> float:
        return round(sum(r.cost_usd for r in self.rows), 6)

    def as_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "rows": [r.as_json() for r in self.rows],
            "total_usd": self.total_usd,
        }


def _ran_nothing(body: Mapping[str, Any]) -> bool:
    """Rejected, or cancelled before it ran (no `cost_source`: its CLI never started)."""
    status = body.get("status")
    return status == "rejected" or (status == "cancelled" and "cost_source" not in body)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def key_of(result: StoredResult, by: str, labels: Mapping[str, Mapping[str, str]]) -> str:
    """The row a result belongs to; `label`: the worker's labels in fleet.yaml, as k=v."""
    body = result.body
    if by == "worker":
        return result.worker_id
    if by == "model":
        return str(body.get("model") or "(cli default)")
    if by == "llm":
        return str(body.get("llm") or "?")
    if by == "day":
        return str(body.get("started_at") or body.get("ended_at") or "?")[:10]
    own = labels.get(result.worker_id) or {}
    return ",".join(f"{k}={v}" for k, v in sorted(own.items())) or "(no labels)"


def ledger(
    results: Iterable[StoredResult], by: str, labels: Mapping[str, Mapping[str, str]]
) -> Ledger:
    rows: dict[str, Row] = {}
    for result in results:
        key = key_of(result, by, labels)
        rows.setdefault(key, Row(key)).add(result.body)
    return Ledger(by, tuple(rows[k] for k in sorted(rows)))
