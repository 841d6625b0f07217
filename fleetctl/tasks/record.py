"""Task records: the publisher's account of each task it sent (docs/messages.md, "Task record").

A worker may publish a result on its own subjects for any task id (`af.result.<itself>.<id>`),
so the results stream alone cannot say whom a task was sent to. The record can: the publisher
writes it into the KV bucket `<PREFIX>_RECORDS` (key: the task id) when it sends the task,
and no worker may read or write that bucket (docs/security.md). `results` and `tasks` take a
task's targets from it, mark any other worker's answer as unsolicited, and read one task's
state by subject instead of scanning the window. Pure: the bus calls are in
fleetctl/tasks/sending.py (writing) and answers.py, listing.py (reading).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from fleetctl.tasks.messages import TASK_ID

VERSION = 1


@dataclass(frozen=True)
class Target:
    """One published copy of a task: to a worker's inbox, or to a `pick: any` route's
    shared queue (`route`; `worker_id` is then empty until a member has run it)."""

    worker_id: str
    msg_id: str
    stream_seq: int
    duplicate: bool  # the bus already had this (task id, target) within its window
    route: str | None = None
    members: tuple[str, ...] = ()  # a route's: who may run it

    @property
    def key(self) -> str:
        """What this target is called until it has a result: its worker, or `route:NAME`."""
        return self.worker_id or f"route:{self.route}"

    @property
    def workers(self) -> tuple[str, ...]:
        """Who may answer for this target: its worker, or the route's members."""
        return (self.worker_id,) if self.worker_id else self.members

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"worker_id": self.worker_id or None}
        if self.route is not None:
            out["route"] = self.route
        return out | {
            "msg_id": self.msg_id,
            "stream_seq": self.stream_seq,
            "duplicate": self.duplicate,
        }

    def as_record(self) -> dict[str, Any]:
        """The target as its record keeps it (whether one send was a duplicate is not kept)."""
        out: dict[str, Any] = (
            {"worker_id": self.worker_id}
            if self.worker_id
            else {"route": self.route, "members": list(self.members)}
        )
        return out | {"msg_id": self.msg_id, "stream_seq": self.stream_seq}


@dataclass(frozen=True)
class Sent:
    """What one send published. `record_error` says why its record could not be written
    (None: recorded); the copies were published either way."""

    task_id: str
    targets: tuple[Target, ...]
    at: float = field(default_factory=time.time)
    record_error: str | None = None

    @property
    def workers(self) -> list[str]:
        return [t.worker_id for t in self.targets]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "task_id": self.task_id,
            "sent": [t.as_json() for t in self.targets],
            "recorded": self.record_error is None,
        }


@dataclass(frozen=True)
class Sender:
    """Who sent a task, as the publisher says: the NATS user and public key of the creds it
    connected with, and the login@host it ran on. The bus does not stamp the sender; only
    holders of the publisher's creds can write a record at all."""

    user: str | None
    public_key: str | None
    login: str | None

    def as_json(self) -> dict[str, Any]:
        return {"user": self.user, "public_key": self.public_key, "login": self.login}


@dataclass(frozen=True)
class TaskRecord:
    """Whom a task was sent to, when, by whom, and how large it was (`task_bytes`: the task
    as published). A task id sent again
    (another target, a `dead replay`) extends its record: `targets` are every send's, the
    rest describes the first send, `sends` and `last_at` count the later ones."""

    task_id: str
    at: str
    sender: Sender
    targets: tuple[Target, ...]
    task_bytes: int
    route: str | None = None
    repo: str | None = None
    ref: str | None = None
    sends: int = 1
    last_at: str = ""

    def solicited(self, worker_id: str) -> bool:
        """Was `worker_id` sent this task (itself, or as a member of a route it went to)?"""
        return any(worker_id in t.workers for t in self.targets)

    def sent(self) -> Sent:
        """The record as a send, for following its targets (`Client.progress`, `wait`)."""
        return Sent(self.task_id, self.targets, record_error=None)

    def merged(self, later: TaskRecord) -> TaskRecord:
        """This record extended by a later send of the same task id: a target sent again
        keeps its place with the later copy (the one a worker will run now)."""
        by_key = {t.key: t for t in self.targets}
        by_key |= {t.key: t for t in later.targets}
        order = list(dict.fromkeys([*(t.key for t in self.targets), *by_key]))
        return replace(
            self,
            targets=tuple(by_key[k] for k in order),
            sends=self.sends + later.sends,
            last_at=later.last_at or later.at,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "task_id": self.task_id,
            "at": self.at,
            "last_at": self.last_at or self.at,
            "sends": self.sends,
            "sender": self.sender.as_json(),
            "route": self.route,
            "repo": self.repo,
            "ref": self.ref,
            "task_bytes": self.task_bytes,
            "targets": [t.as_record() for t in self.targets],
        }

    def encode(self) -> bytes:
        return json.dumps(self.as_json(), ensure_ascii=False).encode()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new(
    task_id: str,
    data: bytes,
    targets: Sequence[Target],
    sender: Sender,
    *,
    route: str | None = None,
    repo: str | None = None,
    ref: str | None = None,
    at: str | None = None,
) -> TaskRecord:
    """The record of one send: the published task's bytes, the copies that were stored."""
    when = at or now()
    return TaskRecord(
        task_id,
        when,
        sender,
        tuple(targets),
        len(data),
        route=route,
        repo=repo,
        ref=ref,
        last_at=when,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _target(item: Any) -> Target | None:
    if not isinstance(item, Mapping):
        return None
    msg_id, seq = item.get("msg_id"), item.get("stream_seq")
    if not isinstance(msg_id, str) or type(seq) is not int or seq < 0:
        return None
    worker, route, members = item.get("worker_id"), item.get("route"), item.get("members")
    if isinstance(worker, str) and worker:
        return Target(worker, msg_id, seq, False)
    if (
        isinstance(route, str)
        and isinstance(members, list)
        and all(isinstance(m, str) for m in members)
    ):
        return Target("", msg_id, seq, False, route, tuple(members))
    return None


def parse(task_id: str, data: bytes) -> TaskRecord | None:
    """The record stored under `task_id`, or None when it is not a version-1 record of that
    task (only the publisher's creds can write one, but a reader checks what it reads)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("version") != VERSION:
        return None
    at, raw_targets, size = body.get("at"), body.get("targets"), body.get("task_bytes")
    if body.get("task_id") != task_id or not TASK_ID.fullmatch(task_id) or not isinstance(at, str):
        return None
    if not isinstance(raw_targets, list) or type(size) is not int:
        return None
    targets = [_target(t) for t in raw_targets]
    if any(t is None for t in targets):
        return None
    given = body.get("sender")
    sender: dict[str, Any] = given if isinstance(given, dict) else {}
    sends = body.get("sends")
    return TaskRecord(
        task_id,
        at,
        Sender(_str(sender.get("user")), _str(sender.get("public_key")), _str(sender.get("login"))),
        tuple(t for t in targets if t is not None),
        size,
        route=_str(body.get("route")),
        repo=_str(body.get("repo")),
        ref=_str(body.get("ref")),
        sends=sends if type(sends) is int and sends > 0 else 1,
        last_at=_str(body.get("last_at")) or at,
    )
