"""A lease per (worker, task) on the bus, so a task never runs twice at the same time.

The ack wait alone cannot tell a frozen poller from a dead one: once it passes, the task is
delivered again, to another instance of the same worker (another host, or a second poller on
this one), while the first one's CLI may still be running. So before running a task the
poller takes a lease: a key `<worker_id>.<task_id>` in the fleet's NATS KV bucket
(`<PREFIX>_LEASES`, the stream `KV_<PREFIX>_LEASES`), written only if absent
(`Nats-Expected-Last-Subject-Sequence`), with a per-message TTL (`Nats-TTL`; the bucket has
`allow_msg_ttl`). The holder rewrites it with every progress signal, each write expecting its
own last one, and deletes it once the result is stored. A holder that dies stops refreshing,
the server removes the key when its TTL runs out, and the next delivery takes it. A poller
restarted after a crash need not wait that long: a lease whose holder provably died on this
machine, recording its CLIs in the same state directory, is taken over at once (`gone`).

Only the worker's own keys: it publishes to `$KV.<bucket>.<worker_id>.>` and reads them back
by a direct get with the subject in the request subject, so its credentials need nothing
else (docs/security.md). The same task id legitimately runs on several workers (fan-out),
once each: the worker id in the key scopes the lease to one worker.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.js.errors

from poller.config import Config
from poller.runner import start_time

# Nats-Expected-Last-Subject-Sequence did not match: somebody wrote the key first.
WRONG_LAST_SEQUENCE = (10071, 10164)
KV_OPERATION = "KV-Operation"
REMOVED = ("DEL", "PURGE")
TIMEOUT = 5.0
# A released key (a delete marker) need not stay: the next take handles a marker or nothing.
MARKER_TTL = 60
# A lease outlives this many ack waits without a refresh: a poller frozen for less than that
# keeps its task; a dead one's task runs again after at most that long.
TTL_ACK_WAITS = 3


@dataclass
class Lease:
    """A lease we hold: `revision` is the sequence of our last write of the key."""

    task_id: str
    revision: int


@dataclass(frozen=True)
class Held:
    """Somebody else holds the task: who, how long it may still run, and what its holder
    wrote about itself (to tell whether it died on this machine)."""

    holder: str
    ttl: float
    revision: int = 0
    value: dict[str, Any] | None = None


def ttl_for(cfg: Config, ack_wait: float) -> int:
    """Whole seconds (what `Nats-TTL` takes): LEASE_TTL, else TTL_ACK_WAITS ack waits."""
    return cfg.lease_ttl or max(math.ceil(TTL_ACK_WAITS * ack_wait), 1)


def holder_id() -> str:
    """This poller process, unique across hosts and restarts: host, pid and a random part."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def machine_id() -> str:
    """This kernel boot and pid namespace: where a pid names the same process as here."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pidns = str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return ""
    return f"{boot}/{pidns}"


class Leases:
    """Take, refresh and release the leases of one worker's tasks."""

    def __init__(self, cfg: Config, js: Any, ttl: int, holder: str | None = None) -> None:
        self.js, self.ttl = js, ttl
        self.bucket = cfg.lease_bucket
        self.stream = f"KV_{self.bucket}"
        self.worker_id = cfg.worker_id
        self.holder = holder or holder_id()
        self.state_dir = str(cfg.state_dir)
        pid = os.getpid()
        self.me = {"machine": machine_id(), "pid": pid, "pid_start": start_time(pid)}

    def subject(self, task_id: str) -> str:
        """Only for an id that passed `is_token`: it becomes the key's last token."""
        return f"$KV.{self.bucket}.{self.worker_id}.{task_id}"

    async def take(self, task_id: str, stream_seq: int) -> Lease | Held:
        """Ours if nobody holds it, or if this poller does; raises on a bus error (the
        caller asks again, or gives the task back).

        A lease this poller holds is one it left behind: the caller takes a lease only for
        a task that does not run here (poller/delivery.py joins a second delivery of one
        that does). Its write was stored while the answer was lost (asked again after a bus
        error), or its release failed: either way it is taken again at once, rather than
        waited out for a whole TTL."""
        try:
            return await self._write(task_id, stream_seq, last=0)
        except nats.js.errors.APIError as e:
            if e.err_code not in WRONG_LAST_SEQUENCE:
                raise
        last = await self._last(task_id)
        if last is None:  # expired between the two requests
            return await self._write(task_id, stream_seq, last=0)
        held = _held(last)
        removed = (last.headers or {}).get(KV_OPERATION) in REMOVED
        if removed or (held.value or {}).get("holder") == self.holder:
            return await self._write(task_id, stream_seq, last=last.seq)
        return held

    def gone(self, held: Held) -> bool:
        """Did the holder die on this machine, recording its CLIs where we do? Then its pid
        no longer names it (gone, or reused: another start time), and `kill_orphans` on our
        state directory stops what it left running."""
        v = held.value or {}
        mine = self.me["machine"]
        if not mine or v.get("machine") != mine or v.get("state_dir") != self.state_dir:
            return False
        pid, started = v.get("pid"), v.get("pid_start")
        if not isinstance(pid, int) or not isinstance(started, str):
            return False
        return start_time(pid) != started

    async def take_over(self, task_id: str, stream_seq: int, held: Held) -> Lease | Held:
        """Replace a dead holder's lease, unless somebody wrote the key since we read it."""
        try:
            return await self._write(task_id, stream_seq, last=held.revision)
        except nats.js.errors.APIError as e:
            if e.err_code not in WRONG_LAST_SEQUENCE:
                raise
        return await self.take(task_id, stream_seq)

    async def refresh(self, lease: Lease, stream_seq: int) -> bool:
        """Extend our lease; False if it is no longer ours (it expired and was taken). A
        write of ours can be stored while its answer is lost (on a cluster, the broker
        answering went away): the key's last value is then still ours, for this delivery,
        and the lease goes on from its revision."""
        last = lease.revision
        for _ in range(2):
            try:
                fresh = await self._write(lease.task_id, stream_seq, last=last)
            except nats.js.errors.APIError as e:
                if e.err_code not in WRONG_LAST_SEQUENCE:
                    raise
                found = await self._last(lease.task_id)
                if found is None or not self._ours(found, stream_seq):
                    return False
                last = int(found.seq)
                continue
            lease.revision = fresh.revision
            return True
        return False

    def _ours(self, msg: Any, stream_seq: int) -> bool:
        """A live lease this poller wrote for this delivery."""
        if (msg.headers or {}).get(KV_OPERATION) in REMOVED:
            return False
        value = _held(msg).value or {}
        return value.get("holder") == self.holder and value.get("stream_seq") == stream_seq

    async def release(self, lease: Lease) -> None:
        """Delete the key if it is still ours (a delete marker that expires by itself)."""
        headers = {
            KV_OPERATION: "DEL",
            "Nats-Expected-Last-Subject-Sequence": str(lease.revision),
            "Nats-TTL": f"{MARKER_TTL}s",
        }
        await self.js.publish(
            self.subject(lease.task_id), b"", timeout=TIMEOUT, stream=self.stream, headers=headers
        )

    async def _write(self, task_id: str, stream_seq: int, *, last: int) -> Lease:
        value = {
            "holder": self.holder,
            "task_id": task_id,
            "stream_seq": stream_seq,
            "ttl_s": self.ttl,
            "at": time.time(),
            "state_dir": self.state_dir,
            **self.me,
        }
        headers = {"Nats-Expected-Last-Subject-Sequence": str(last), "Nats-TTL": f"{self.ttl}s"}
        ack = await self.js.publish(
            self.subject(task_id),
            json.dumps(value).encode(),
            timeout=TIMEOUT,
            stream=self.stream,
            headers=headers,
        )
        return Lease(task_id, int(ack.seq))

    async def _last(self, task_id: str) -> Any | None:
        try:
            return await self.js.get_msg(self.stream, subject=self.subject(task_id), direct=True)
        except nats.js.errors.NotFoundError:
            return None


def _held(msg: Any) -> Held:
    """Who holds it, and its TTL (an upper bound on how long until it frees)."""
    try:
        value = json.loads(msg.data or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        value = None
    if not isinstance(value, dict):
        value = None
    holder = value.get("holder") if value else None
    ttl = _ttl_seconds((msg.headers or {}).get("Nats-TTL"))
    return Held(str(holder) if holder else "?", ttl, int(msg.seq or 0), value)


def _ttl_seconds(raw: str | None) -> float:
    """`Nats-TTL` as written (`30s`, or plain seconds); 0 when absent or unreadable."""
    if not raw:
        return 0.0
    text = raw.strip().removesuffix("s")
    try:
        return max(float(text), 0.0)
    except ValueError:
        return 0.0
