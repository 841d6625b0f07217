"""Cancelling a task (`fleetctl task cancel`): the publisher writes a mark, the key
`<worker_id>.<task_id>` in the fleet's cancels bucket (`<PREFIX>_CANCELS`, stream
`KV_<PREFIX>_CANCELS`), and each worker acts on its own marks only:

- **Before a task runs** (under its lease, with the other checks), the flow reads its mark
  (a direct get, `Bus.cancelled`): a cancelled task is not run; a `cancelled` result is
  stored and the task acked, so it leaves the queue and is never retried.
- **While a task runs**, the mark's publish reaches this worker's subscription on its own
  marks (no consumer: nothing to create, nothing to lag behind). The run's cancel event is
  set and the runner stops the CLI's process group as at a timeout (SIGTERM, SIGKILL after
  KILL_GRACE); the result is `cancelled`.

A mark seen between the check and the start of the CLI is not lost: every mark the
subscription sees is remembered (the last SEEN_KEEP), and a run whose task id was seen starts
cancelled.

The worker's credentials allow exactly a direct get of `$KV.<bucket>.<its id>.*` and a
subscription to the same keys (docs/security.md). A poller whose credentials predate cancels
(issued before them; `fleetctl creds rotate --worker ID` issues new ones, the plan warns)
says so once and runs its tasks unchecked, rather than wait on a refused request for each.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from poller.config import Config, is_token
from poller.logs import Logger
from poller.permissions import allowed

SEEN_KEEP = 1000  # marks remembered from the subscription (task ids: a few KiB)
REMOVED = ("DEL", "PURGE")  # KV-Operation of a deleted key: no mark


class Cancels:
    """One worker's cancel marks: the subscription that sees them, and the runs they stop."""

    def __init__(self, cfg: Config, log: Logger) -> None:
        self.worker_id, self.log = cfg.worker_id, log
        self.bucket = cfg.cancel_bucket
        self.stream = f"KV_{self.bucket}"
        self.available = permitted(cfg.nats_creds, self.subject("x"), self.stream)
        self._running: dict[str, asyncio.Event] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    def subject(self, task_id: str) -> str:
        """One mark's key (`*`: every one of this worker's)."""
        return f"$KV.{self.bucket}.{self.worker_id}.{task_id}"

    async def watch(self, nc: Any) -> None:
        """Subscribe to this worker's marks (once connected)."""
        if not self.available:
            self.log.warning(
                "cancel_unavailable",
                why="these credentials predate task cancels: tasks run unchecked",
                fix=f"fleetctl creds rotate --worker {self.worker_id}",
            )
            return
        await nc.subscribe(self.subject("*"), cb=self._on_mark)

    async def _on_mark(self, msg: Any) -> None:
        if (getattr(msg, "headers", None) or {}).get("KV-Operation") in REMOVED:
            return
        task_id = str(msg.subject).rsplit(".", 1)[-1]
        if is_token(task_id):
            self.notice(task_id)

    def notice(self, task_id: str) -> None:
        """A mark for `task_id`: stop its run, if it runs here, and remember it."""
        self._seen[task_id] = None
        self._seen.move_to_end(task_id)
        while len(self._seen) > SEEN_KEEP:
            self._seen.popitem(last=False)
        event = self._running.get(task_id)
        if event is not None and not event.is_set():
            self.log.info("task_cancel_requested", task_id=task_id)
            event.set()

    def arm(self, task_id: str) -> asyncio.Event:
        """The event that stops this task's run; already set when its mark was seen."""
        event = asyncio.Event()
        if task_id in self._seen:
            event.set()
        self._running[task_id] = event
        return event

    def disarm(self, task_id: str) -> None:
        self._running.pop(task_id, None)


def permitted(creds: Path | None, key: str, stream: str) -> bool:
    """May these creds read the mark `key` (a direct get) and subscribe to it? True without
    creds (a bus without auth) or when they cannot be read: then the requests tell."""
    claims = _claims(creds)
    if claims is None:
        return True
    nats = claims.get("nats") or {}
    get = f"$JS.API.DIRECT.GET.{stream}.{key}"
    return allowed(nats.get("pub") or {}, get) and allowed(nats.get("sub") or {}, key)


def _claims(creds: Path | None) -> dict[str, Any] | None:
    """The user JWT's claims from a .creds file (its first token), unverified: only to know
    what the server will refuse, never to grant anything."""
    if creds is None:
        return None
    try:
        text = creds.read_text()
        token = next(line.strip() for line in text.splitlines() if line.startswith("eyJ"))
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (OSError, StopIteration, IndexError, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None
