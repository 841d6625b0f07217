"""Tasks as published and results as read: the message shapes of docs/messages.md on the
coordinator's side (ids, dedup ids, the size limit, a result attributed by its subject)."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.bus.resources import TASK_MAX_BYTES

# Matched whole (`fullmatch`): `$` would let a trailing newline through.
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# What a published task may weigh: the stream's max_msg_size (the poller's MAX_TASK_BYTES
# default too). The server's max_payload (1 MiB) also counts the headers.
MAX_TASK_BYTES = TASK_MAX_BYTES - 1024
# A result's status, or where a target's copy of the task is when it has none yet. `lost`:
# the copy left the task stream with neither a result nor a dead letter (expired unrun, acked
# without a result, or its dead letter was purged). `cancelled`: a result, or a copy still
# queued that `task cancel` marked (its worker drops it unrun).
FINAL = ("completed", "failed", "timeout", "rejected", "cancelled", "dead-lettered", "lost")
PENDING = ("queued", "running")
# The most of a result's `stderr_tail` shown or printed (the poller keeps its last 8 KiB; a
# result is written by whoever holds the worker's creds, so it is bounded here as well).
STDERR_SHOWN = 8 * 1024


class TaskError(ValueError):
    """The task itself is unusable (id, size, empty prompt): nothing is published."""


def new_task_id() -> str:
    """`t-<UTC date>-<time>-<6 hex>`: sortable, and unique without coordination."""
    return time.strftime("t-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def dedup_id(task_id: str, worker_id: str) -> str:
    """The task's Nats-Msg-Id on one target's inbox. JetStream deduplicates ids across the
    whole task stream, so a fan-out must give each target its own, or only the first
    target would get the task; the same pair within the window is dropped (sent once)."""
    return f"{task_id}:{worker_id}"


def check_task_id(task_id: str) -> str:
    if not TASK_ID.fullmatch(task_id):
        raise TaskError(
            f"task id {task_id[:60]!r} must be 1-128 letters, digits, '-' or '_' "
            "(it becomes a subject token and a branch name)"
        )
    return task_id


def build(
    task_id: str,
    instructions: str,
    *,
    timeout: float | None = None,
    task_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    payload: Any = None,
    sender: str = "fleetctl",
    code: Mapping[str, str] | None = None,
) -> bytes:
    """The task as published (version 1), checked against the size limit. `code`: its
    `repo`, `ref` and `base` (fleetctl/tasks/code.py)."""
    check_task_id(task_id)
    if not instructions.strip():
        raise TaskError("the prompt is empty: give TEXT, --file PATH or --file - (stdin)")
    task: dict[str, Any] = {
        "version": 1,
        "task_id": task_id,
        "instructions": instructions,
        "from": sender,
    }
    if timeout is not None:
        task["timeout"] = timeout
    if task_type:
        task["task_type"] = task_type
    if metadata:
        task["metadata"] = dict(metadata)
    if payload is not None:
        task["payload"] = payload
    if code:
        task.update(code)
    data = json.dumps(task, ensure_ascii=False).encode()
    if len(data) > MAX_TASK_BYTES:
        raise TaskError(
            f"the task is {len(data):,} bytes; the bus takes at most {MAX_TASK_BYTES:,} "
            "(shorten the prompt, or send a reference to the data instead of the data)"
        )
    return data


@dataclass(frozen=True)
class Result:
    """One target's outcome, attributed by the subject it was stored on (the body's
    `worker_id` is whatever its publisher wrote; the subject is the server's check)."""

    worker_id: str
    status: str
    body: Mapping[str, Any] = field(default_factory=dict)
    elapsed_s: float | None = None  # while running: since it was first seen running
    # An answer from a worker the task's record does not name as a target (it published on
    # its own result subject for a task it was never sent); None: no record to tell.
    unsolicited: bool | None = False
    # A person's verdict on this answer (fleetctl/tasks/judgments.py), from the judgments
    # bucket, never from the result's body; None: not judged (or not read).
    judgment: Mapping[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def output(self) -> str:
        return str(self.body.get("output", ""))

    def get(self, key: str) -> Any:
        return self.body.get(key)

    @property
    def reason(self) -> str | None:
        """Why it did not complete: the result's `error` (the poller's reason; a dead
        letter's or a lost copy's `reason`), else what its exit code says; None for a
        completed result and a copy still queued or running."""
        if self.status in PENDING:
            return None
        if self.status == "completed":  # an `error` here is the poller's, after the CLI ran
            return str(self.body["error"]) if self.body.get("error") else None
        for key in ("error", "reason"):
            said = self.body.get(key)
            if said:
                return str(said)
        code = self.body.get("exit_code")
        if self.status == "timeout":
            return "timed out: stopped at its time limit"
        if self.status == "failed" and isinstance(code, int) and not isinstance(code, bool):
            return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return None

    @property
    def stderr_tail(self) -> str:
        """The end of what the CLI wrote on stderr, at most STDERR_SHOWN characters."""
        tail = self.body.get("stderr_tail")
        return tail[-STDERR_SHOWN:] if isinstance(tail, str) else ""

    def as_json(self) -> dict[str, Any]:
        """The `results[]` entry of `results --json` and `task send --wait --json`."""
        keys = ("output", "exit_code", "duration_s", "model", "host", "attempt", "usage")
        out: dict[str, Any] = {"worker_id": self.worker_id, "status": self.status}
        out |= {k: self.body.get(k) for k in keys}
        out["cost_usd"] = self.body.get("cost_usd")
        for extra in ("llm", "backend", "labels", "code", "output_truncated"):
            if extra in self.body:
                out[extra] = self.body[extra]
        if self.body.get("reason"):  # a dead letter
            out["reason"] = self.body["reason"]
        for now in ("activity", "paused"):  # running / queued, from the worker's heartbeat
            if self.body.get(now):
                out[now] = self.body[now]
        out["error"] = self.reason
        out["stderr_tail"] = self.stderr_tail
        out["unsolicited"] = self.unsolicited
        out["judgment"] = dict(self.judgment) if self.judgment is not None else None
        return out


def results_json(task_id: str, results: list[Result]) -> dict[str, Any]:
    return {"version": 1, "task_id": task_id, "results": [r.as_json() for r in results]}
