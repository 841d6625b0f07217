"""Task and result messages (schemas in docs/messages.md), checked by hand: no extra dependency.

Parsing never raises: bad input becomes a `Rejection` that says why and, when it can, which
task id it was, so the poller can answer with a `rejected` result and a dead letter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from poller.config import is_token

VERSION = 1
STATUSES = ("completed", "failed", "timeout", "rejected")
# The server's default max payload is 1 MiB; a result must stay well under it.
MAX_RESULT_BYTES = 768 * 1024
STDERR_TAIL = 8 * 1024

_OPTIONAL_STR = ("from", "reply_to", "task_type")
# Deeper JSON is refused: Python's decoder and encoder recurse, so about 1,000 levels raise
# RecursionError (when decoding; far fewer when the payload is re-encoded for the prompt).
MAX_NESTING = 100


@dataclass(frozen=True)
class Task:
    task_id: str
    instructions: str
    sender: str | None = None
    reply_to: str | None = None
    task_type: str | None = None
    payload: Any = None
    timeout: float | None = None
    max_budget_usd: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def prompt(self) -> str:
        """What goes to the CLI's stdin: the instructions, then the payload as JSON if any."""
        if self.payload is None:
            return self.instructions
        return f"{self.instructions}\n\nPayload (JSON):\n{json.dumps(self.payload, indent=2)}"


@dataclass(frozen=True)
class Rejection:
    reason: str
    task_id: str | None = None  # set only when it is a valid subject token


def _recover_id(obj: dict[str, Any]) -> str | None:
    tid = obj.get("task_id")
    return tid if isinstance(tid, str) and is_token(tid) else None


def _id_of(data: bytes) -> str | None:
    """The id of an oversized task, for its `rejected` result (the stream caps it at 1 MiB)."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return _recover_id(obj) if isinstance(obj, dict) else None


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Without recursion, so that any document the decoder accepted can be measured."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_task(data: bytes, max_bytes: int) -> Task | Rejection:
    """Decode and check one task message."""
    if len(data) > max_bytes:
        return Rejection(
            f"task is {len(data)} bytes, more than the {max_bytes} allowed", _id_of(data)
        )
    too_deep = f"JSON nested more than {MAX_NESTING} levels deep"
    try:
        obj = json.loads(data)
    except RecursionError:
        return Rejection(too_deep)
    except ValueError as e:  # not JSON, not UTF-8, or an integer of more than 4300 digits
        return Rejection(f"not JSON: {e.msg if isinstance(e, json.JSONDecodeError) else e}")
    if _nested_deeper_than(obj, MAX_NESTING):
        return Rejection(too_deep, _recover_id(obj) if isinstance(obj, dict) else None)
    if not isinstance(obj, dict):
        return Rejection(f"a task must be a JSON object, not {type(obj).__name__}")
    tid = _recover_id(obj)
    raw_id = obj.get("task_id")
    if raw_id is None:
        return Rejection("task_id is missing")
    if not isinstance(raw_id, str):
        return Rejection(f"task_id must be a string, not {type(raw_id).__name__}")
    if tid is None:
        return Rejection("task_id must be 1-128 letters, digits, '-' or '_'")
    problem = _check_fields(obj)
    if problem:
        return Rejection(problem, tid)
    timeout = obj.get("timeout")
    budget = obj.get("max_budget_usd")
    return Task(
        task_id=tid,
        instructions=obj["instructions"],
        sender=obj.get("from"),
        reply_to=obj.get("reply_to"),
        task_type=obj.get("task_type"),
        payload=obj.get("payload"),
        timeout=float(timeout) if timeout is not None else None,
        max_budget_usd=float(budget) if budget is not None else None,
        metadata=obj.get("metadata") or {},
    )


def _check_fields(obj: dict[str, Any]) -> str | None:
    version = obj.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        return f"version must be {VERSION}"
    instr = obj.get("instructions")
    if not isinstance(instr, str) or not instr.strip():
        return "instructions must be a non-empty string"
    for name in _OPTIONAL_STR:
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return f"{name} must be a string"
    timeout = obj.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        return "timeout must be a number of seconds greater than 0"
    budget = obj.get("max_budget_usd")
    if budget is not None and (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not 0 < budget < float("inf")
    ):
        return "max_budget_usd must be a number of dollars greater than 0"
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        return "metadata must be an object"
    return None


@dataclass
class Result:
    """What the poller publishes to `<prefix>.result.<worker_id>.<task_id>`."""

    task_id: str
    worker_id: str
    backend: str
    llm: str
    model: str
    status: str
    exit_code: int | None
    output: str
    output_truncated: bool
    output_bytes: int
    stderr_tail: str
    started_at: str
    ended_at: str
    duration_s: float
    attempt: int
    host: str
    poller_version: str
    error: str | None = None
    usage: dict[str, int] | None = None
    cost_usd: float | None = None
    cost_source: str | None = None  # reported, priced or unknown (docs/messages.md)
    git: dict[str, Any] | None = None
    task_type: str | None = None
    reply_to: str | None = None
    sender: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # the worker's, from fleet.yaml

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": VERSION}
        for k, v in self.__dict__.items():
            if k == "sender":
                k = "from"
            if v is None or (k in ("metadata", "labels") and not v):
                continue
            d[k] = v
        return d

    def encode(self) -> bytes:
        """JSON, cutting `output` further if needed so the message stays under MAX_RESULT_BYTES."""
        data = json.dumps(self.to_dict(), ensure_ascii=False).encode()
        while len(data) > MAX_RESULT_BYTES and self.output:
            keep = max(0, len(self.output) // 2 - 1)
            self.output = self.output[:keep]
            self.output_truncated = True
            data = json.dumps(self.to_dict(), ensure_ascii=False).encode()
        if len(data) > MAX_RESULT_BYTES:  # huge metadata: drop it rather than fail to publish
            self.metadata = {"dropped": "metadata too large for a result"}
            data = json.dumps(self.to_dict(), ensure_ascii=False).encode()
        return data
