"""The Python API for coordinators: send tasks to the fleet, read and wait for results.

    from fleetctl.tasks.client import Client

    with Client.open("fleet.yaml") as fleet:  # the bus, reached as the CLI reaches it
        sent = fleet.send("Write a haiku about queues", to=["w1", "w2", "w3"])
        for result in fleet.wait(sent, timeout=600):
            print(result.worker_id, result.status, result.output)

The `fleetctl task send`, `results`, `tasks` and `dead` commands are built on this class:
there is one implementation. Targets are checked against fleet.yaml before anything is
published (fleetctl/tasks/targets.py); each target gets its own Nats-Msg-Id, so a fan-out runs
once on every target and the same task id sent again within the duplicate window runs
nothing new. Each send is recorded (fleetctl/tasks/record.py): whom the task went to, which
`results` and `tasks` read instead of scanning the window, and against which they mark an
answer from any other worker as unsolicited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleetctl.bus import taskbus
from fleetctl.bus.client import BusError, Endpoint, Identity, connect
from fleetctl.bus.loop import Loop
from fleetctl.bus.names import NatsNames
from fleetctl.bus.reach import BusOptions, reach
from fleetctl.config.model import Fleet
from fleetctl.tasks import messages as taskmsg
from fleetctl.tasks import record as taskrecord
from fleetctl.tasks import targets
from fleetctl.tasks.ledger import StoredResult
from fleetctl.tasks.messages import Result
from fleetctl.tasks.record import Sender, Sent, Target, TaskRecord

__all__ = ["Answers", "Client", "DeadLetter", "NoSuchTask", "Sent", "Target", "TaskRow"]

# Seconds between looks at the results stream while nothing is new: from the first to the
# last, doubling, back to the first when a result arrives (quick answers seen quickly, a
# long task costs ten small requests a second).
POLL_FIRST, POLL_LAST = 0.002, 0.1
PROGRESS_EVERY = 1.0  # seconds between looks at the consumers (queued / running)
MULTI_LAST = 1000  # results one batched direct get may match (nats-server: 1024, then 413)
RECORD_TRIES = 20  # compare-and-set writes of one record before giving up (concurrent sends)
LOST = (
    "its copy left the task stream with neither a result nor a dead letter "
    "(expired unrun, acked without a result, or its dead letter was removed)"
)


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


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    worker_id: str
    body: Mapping[str, Any]

    @property
    def task_id(self) -> str | None:
        value = self.body.get("task_id")
        return value if isinstance(value, str) else None

    def task(self) -> bytes | None:
        """The original task exactly as received (None when it was too large to keep)."""
        import base64

        raw = self.body.get("task_b64")
        return base64.b64decode(raw) if isinstance(raw, str) else None

    def as_json(self) -> dict[str, Any]:
        keys = ("task_id", "reason", "attempt", "at", "task_bytes")
        return {"seq": self.seq, "worker_id": self.worker_id} | {k: self.body.get(k) for k in keys}


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


def _run_by_member(
    found: Mapping[tuple[str, str], Result], task_id: str, target: Target
) -> Result | None:
    """A route target's result: the one a member of the route stored for the task."""
    return next((found[(m, task_id)] for m in target.members if (m, task_id) in found), None)


def _allows(patterns: Sequence[str], subject: str) -> bool:
    """Does any NATS subject pattern (`*` one token, `>` the rest) match `subject`?"""
    want = subject.split(".")
    for pattern in patterns:
        parts = pattern.split(".")
        for i, part in enumerate(parts):
            if part == ">" and i < len(want):
                return True
            if i >= len(want) or part not in ("*", want[i]):
                break
        else:
            if len(parts) == len(want):
                return True
    return False


def _identity_of(who: Identity, names: NatsNames) -> tuple[Sender, str | None]:
    """The sender a record names, from the creds this client connects with, and why these
    creds cannot write records (None: they can, or there are no creds to tell). Checked
    here because a publish the server refuses is only a timeout to the publisher."""
    import getpass
    import socket

    try:
        login: str | None = f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        login = None
    if who.creds is None:
        return Sender(None, None, login), None
    from nsc import jwt
    from nsc.creds import parse_creds

    try:
        token, _ = parse_creds(who.creds.read_text())
        claims = jwt.decode(token).claims
    except (OSError, ValueError, UnicodeDecodeError):
        return Sender(None, None, login), None  # the connection already used them
    user, key = claims.get("name"), claims.get("sub")
    sender = Sender(
        user if isinstance(user, str) else None, key if isinstance(key, str) else None, login
    )
    pub = (claims.get("nats") or {}).get("pub") or {}
    allow, deny = list(pub.get("allow") or []), list(pub.get("deny") or [])
    subject = names.record("t")
    if (allow and not _allows(allow, subject)) or _allows(deny, subject):
        return sender, (
            f"the credentials of {user or who.user} predate task records and may not write "
            "them: `fleetctl apply` (or `fleetctl creds init`) issues new ones"
        )
    return sender, None


class Client:
    """A connection to the fleet's bus as `fleet-publisher`, held open across calls."""

    def __init__(self, fleet: Fleet, endpoint: Endpoint) -> None:
        self.fleet = fleet
        self.names = NatsNames(fleet.nats.subject_prefix)
        self._loop = Loop()
        try:
            self._nc = self._loop.call(connect(endpoint))
        except BaseException:
            self._loop.close()
            raise
        self._running_since: dict[tuple[str, str], float] = {}
        self._sender, self._unrecordable = _identity_of(endpoint.identity, self.names)

    @classmethod
    @contextmanager
    def open(
        cls,
        fleet_path: str | Path = "fleet.yaml",
        servers_path: str | Path | None = None,
        *,
        server: str | None = None,
        creds: str | Path | None = None,
    ) -> Iterator[Client]:
        """The fleet of `fleet_path` (servers.yaml beside it unless named), its bus reached
        at `server` with `creds` (default: FLEETCTL_NATS_URL, FLEETCTL_NATS_CREDS), else the
        local fleet, else through SSH to the broker. ConfigError for a bad fleet file."""
        import os

        from fleetctl.config.loader import load_fleet

        path = Path(fleet_path)
        servers = Path(servers_path) if servers_path else path.parent / "servers.yaml"
        fleet = load_fleet(path, servers)
        server = server or os.environ.get("FLEETCTL_NATS_URL") or None
        creds = creds or os.environ.get("FLEETCTL_NATS_CREDS") or None
        options = BusOptions(server, Path(creds) if creds else None)
        with cls.reaching(fleet, path, options) as client:
            yield client

    @classmethod
    def reaching(
        cls, fleet: Fleet, fleet_path: Path, options: BusOptions
    ) -> AbstractContextManager[Client]:
        """The client for an already loaded fleet (what the CLI uses)."""

        @contextmanager
        def opened() -> Iterator[Client]:
            with ExitStack() as stack:
                endpoint = stack.enter_context(reach(fleet, fleet_path, options))
                client = cls(fleet, endpoint)
                stack.callback(client.close)
                yield client

        return opened()

    def close(self) -> None:
        try:
            self._loop.call(self._nc.close())
        finally:
            self._loop.close()

    # ---- sending -------------------------------------------------------------------------

    def resolve(
        self,
        to: Sequence[str] = (),
        select: Mapping[str, str] | None = None,
        route: str | None = None,
        any: bool = False,
    ) -> list[str]:
        """The target worker ids, checked against the fleet (TargetError otherwise)."""
        ask = targets.Ask(tuple(to), select, route, any)
        return targets.resolve(self.fleet, ask, self.load)

    def load(self, workers: Sequence[str]) -> dict[str, int]:
        """Tasks queued plus in flight on each worker's consumer."""

        async def go() -> dict[str, int]:
            infos = await asyncio.gather(*(self._consumer(w) for w in workers))
            return {
                w: int(i.get("num_pending", 0)) + int(i.get("num_ack_pending", 0))
                for w, i in zip(workers, infos, strict=True)
                if i is not None
            }

        return self._loop.call(go())

    def send(
        self,
        prompt: str,
        *,
        to: Sequence[str] = (),
        select: Mapping[str, str] | None = None,
        route: str | None = None,
        any: bool = False,
        task_id: str | None = None,
        timeout: float | None = None,
        task_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        payload: Any = None,
    ) -> Sent:
        """Publish one copy of the task per target; TargetError or TaskError (nothing
        published) when a target or the task is not acceptable."""
        task_id = task_id or taskmsg.new_task_id()
        data = taskmsg.build(
            task_id,
            prompt,
            timeout=timeout,
            task_type=task_type,
            metadata=metadata,
            payload=payload,
        )
        workers = self.resolve(to, select, route, any)
        queue = self.fleet.routes.get(route) if route is not None else None
        if queue is not None and queue.pick == "any" and not (to or select or any):
            return self._enqueue(task_id, data, queue.name)
        return self.publish(task_id, data, workers, route=route)

    def _enqueue(self, task_id: str, data: bytes, route: str) -> Sent:
        """One copy on the route's shared queue: the first free member takes it."""
        members = targets.queues(self.fleet)[route]

        async def go() -> Sent:
            msg_id = taskmsg.dedup_id(task_id, self.names.route_consumer(route))
            ack = await taskbus.publish(self._nc, self.names.route_inbox(route), data, msg_id)
            copy = Target("", msg_id, ack.seq, ack.duplicate, route, members)
            why = await self._record(task_id, data, (copy,), route)
            return Sent(task_id, (copy,), record_error=why)

        return self._loop.call(go())

    def publish(
        self,
        task_id: str,
        data: bytes,
        workers: Sequence[str],
        tag: str = "",
        *,
        route: str | None = None,
    ) -> Sent:
        """Publish an encoded task to each of `workers` (already checked), then record
        the copies the bus stored (also when another copy failed: that error is raised
        after the record is written)."""

        async def one(worker: str) -> Target:
            msg_id = taskmsg.dedup_id(task_id, worker) + tag
            ack = await taskbus.publish(self._nc, self.names.inbox(worker), data, msg_id)
            return Target(worker, msg_id, ack.seq, ack.duplicate)

        async def go() -> Sent:
            copies = await asyncio.gather(*(one(w) for w in workers), return_exceptions=True)
            stored = tuple(c for c in copies if isinstance(c, Target))
            why = await self._record(task_id, data, stored, route) if stored else None
            failed = next((c for c in copies if isinstance(c, BaseException)), None)
            if failed is not None:
                raise failed
            return Sent(task_id, stored, record_error=why)

        return self._loop.call(go())

    async def _record(
        self, task_id: str, data: bytes, copies: Sequence[Target], route: str | None
    ) -> str | None:
        """Write the task's record, or extend the one an earlier send of the same id wrote
        (compare-and-set, so concurrent sends lose no target). Why it could not be written,
        or None. Written after the copies were stored: it names what the bus holds."""
        if self._unrecordable is not None:
            return self._unrecordable
        n = self.names
        record = taskrecord.new(task_id, data, copies, self._sender, route=route)
        subject, seq, merged = n.record(task_id), 0, record
        try:
            for _ in range(RECORD_TRIES):
                try:
                    await taskbus.put(self._nc, subject, merged.encode(), seq)
                    return None
                except taskbus.WrongLastSequence:
                    stored = await taskbus.direct_get(self._nc, n.record_stream, subject)
                    earlier = taskrecord.parse(task_id, stored.data) if stored else None
                    seq = stored.seq if stored else 0
                    merged = earlier.merged(record) if earlier else record
        except taskbus.NoStream:
            return f"the bus has no {n.record_stream} bucket yet: `fleetctl apply` creates it"
        except BusError as e:
            return str(e)
        return f"{subject} was written by other sends {RECORD_TRIES} times in a row"

    # ---- reading -------------------------------------------------------------------------

    def results(self, task_id: str) -> list[Result]:
        """Each target's result (or where its copy is), then every other worker's answer,
        marked `unsolicited`; all attributed by subject. NoSuchTask for an unknown id."""
        return self.answers(task_id).results

    def answers(self, task_id: str) -> Answers:
        """The task's record and `results`: by subject, whatever else the window holds."""
        return self._loop.call(self._answers(task_id))

    def record(self, task_id: str) -> TaskRecord | None:
        """Whom the task was sent to, when and by whom; None when the bus has no record."""
        return self._loop.call(self._record_of(task_id))[0]

    async def _record_of(self, task_id: str) -> tuple[TaskRecord | None, str | None]:
        """The task's record, or None and why there is none."""
        taskmsg.check_task_id(task_id)
        n = self.names
        if self._unrecordable is not None:
            return None, self._unrecordable.replace("may not write", "may not read")
        try:
            stored = await taskbus.direct_get(self._nc, n.record_stream, n.record(task_id))
        except taskbus.NoStream:
            return None, f"the bus has no {n.record_stream} bucket yet: `fleetctl apply` creates it"
        if stored is None:
            return (
                None,
                "no record of it: sent before this fleet kept task records, or not by fleetctl",
            )
        record = taskrecord.parse(task_id, stored.data)
        return record, None if record is not None else "its record is not one fleetctl can read"

    async def _answers(self, task_id: str) -> Answers:
        record, note = await self._record_of(task_id)
        found = await self._results_of([task_id])
        if record is None:
            if not found:
                raise NoSuchTask(
                    f"no such task: {task_id} (the bus has no record of it and no result)"
                )
            stored = [replace(r, unsolicited=None) for r in found.values()]
            return Answers(task_id, None, sorted(stored, key=lambda r: r.worker_id), note)
        out: list[Result] = []
        waiting: list[tuple[str, Target]] = []
        for t in record.targets:
            mine = [found[(w, task_id)] for w in t.workers if (w, task_id) in found]
            out += mine
            if not mine:
                waiting.append((task_id, t))
        where = await self._whereabouts(waiting)
        out += [where[(t.key, task_id)] for _, t in waiting]
        others = [r for (w, _), r in sorted(found.items()) if not record.solicited(w)]
        return Answers(task_id, record, out + [replace(r, unsolicited=True) for r in others])

    async def _results_of(self, task_ids: Sequence[str]) -> dict[tuple[str, str], Result]:
        """The stored results of these tasks, by (worker, task): batched direct gets of the
        last message on each task's subjects, as many tasks a request as can answer within
        the server's MULTI_LAST results (a task has at most one result per worker)."""
        n = self.names
        per_request = max(1, MULTI_LAST // max(1, len(self.fleet.workers)))
        out: dict[tuple[str, str], Result] = {}
        for i in range(0, len(task_ids), per_request):
            subjects = [n.result("*", t) for t in task_ids[i : i + per_request]]
            body = {"multi_last": subjects, "batch": MULTI_LAST}
            for m in await taskbus.direct_batch(self._nc, n.results_stream, body):
                who, result = n.attribution(m.subject), m.json()
                if who is not None and isinstance(result, dict):
                    out[who] = Result(who[0], str(result.get("status", "?")), result)
        return out

    def progress(self, sent: Sent) -> list[Result]:
        """Each target's result, or where its copy of the task is (queued, running,
        dead-lettered)."""
        return self._loop.call(self._progress([sent]))

    async def _progress(self, sents: Sequence[Sent]) -> list[Result]:
        found = await self._results_of(list(dict.fromkeys(s.task_id for s in sents)))
        states: dict[tuple[str, str], Result] = {}
        for s in sents:
            for t in s.targets:
                got = found.get((t.worker_id, s.task_id)) or _run_by_member(found, s.task_id, t)
                if got is not None:
                    states[(t.key, s.task_id)] = got
        waiting = [
            (s.task_id, t) for s in sents for t in s.targets if (t.key, s.task_id) not in states
        ]
        states |= await self._whereabouts(waiting)
        return [states[(t.key, s.task_id)] for s in sents for t in s.targets]

    async def _whereabouts(
        self, waiting: Sequence[tuple[str, Target]]
    ) -> dict[tuple[str, str], Result]:
        """Where each (task id, target) without a result is, by its copy's sequence:
        still in the task stream (queued, or running once its consumer delivered it), else
        acked after a result or a dead letter (the poller stores either before it acks), or
        lost. Each consumer is looked at once; each worker's dead letters are read only for
        a copy that left the stream without a result, and once."""
        letters = _DeadLetters(self)
        infos: dict[str, dict[str, Any] | None] = {}
        out: dict[tuple[str, str], Result] = {}
        for task_id, target in waiting:
            key = (target.key, task_id)
            if await self._queued_copy(target):
                if target.key not in infos:
                    infos[target.key] = await self._consumer(target.worker_id, target.route)
                out[key] = self._where(task_id, target, infos[target.key])
            else:
                out[key] = await self._left(task_id, target, letters)
        return out

    async def _queued_copy(self, target: Target) -> bool:
        """Is the target's copy still in the (work queue) task stream: not yet acked?"""
        if target.stream_seq <= 0:
            return True  # not known: take it as still there
        n = self.names
        inbox = n.inbox(target.worker_id) if target.worker_id else n.route_inbox(target.route or "")
        copy = await taskbus.msg_get(self._nc, n.task_stream, {"seq": target.stream_seq})
        return copy is not None and copy.subject == inbox

    async def _left(self, task_id: str, target: Target, letters: _DeadLetters) -> Result:
        """A copy no longer queued: its result (stored just now), its dead letter, or lost."""
        n = self.names
        for w in target.workers:
            stored = await taskbus.direct_get(self._nc, n.results_stream, n.result(w, task_id))
            body = stored.json() if stored is not None else None
            if isinstance(body, dict):
                return Result(w, str(body.get("status", "?")), body)
        letter = await letters.find(target.workers, task_id)
        if letter is not None:
            body = dict(letter.body) | {"status": "dead-lettered"}
            return Result(letter.worker_id, "dead-lettered", body)
        return Result(target.key, "lost", {"reason": LOST})

    def _where(self, task_id: str, target: Target, info: dict[str, Any] | None) -> Result:
        key = (target.key, task_id)
        delivered = int(((info or {}).get("delivered") or {}).get("stream_seq", 0))
        if info is None or delivered < target.stream_seq:
            return Result(target.key, "queued")
        since = self._running_since.setdefault(key, time.monotonic())
        return Result(target.key, "running", elapsed_s=time.monotonic() - since)

    async def _consumer(self, worker: str, route: str | None = None) -> dict[str, Any] | None:
        """A worker's consumer, or a route's shared queue."""
        n = self.names
        durable = n.route_consumer(route) if route is not None else n.consumer(worker)
        return await taskbus.consumer_info(self._nc, n.task_stream, durable)

    def wait(
        self,
        sent: Sent | Sequence[Sent],
        timeout: float | None = None,
        on_update: Callable[[list[Result]], None] | None = None,
    ) -> list[Result]:
        """Block until every target of `sent` has a result (or was dead-lettered), or
        `timeout` seconds pass; then each target's result or last known state.
        `on_update` gets the whole picture whenever it changes (live progress)."""
        sents = [sent] if isinstance(sent, Sent) else list(sent)
        return self._loop.call(self._wait(sents, timeout, on_update))

    async def _wait(
        self,
        sents: Sequence[Sent],
        timeout: float | None,
        on_update: Callable[[list[Result]], None] | None,
    ) -> list[Result]:
        n = self.names
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = await taskbus.last_seq(self._nc, n.results_stream, n.all_results) + 1
        keys = [(t.key, s.task_id) for s in sents for t in s.targets]
        states = dict(zip(keys, await self._progress(sents), strict=True))
        queued = {  # (worker, task id) of a route's member -> that route target's key
            (m, s.task_id): (t.key, s.task_id) for s in sents for t in s.targets for m in t.members
        }
        if on_update is not None:
            on_update(list(states.values()))
        last_look = time.monotonic()
        pause = POLL_FIRST
        while any(not r.final for r in states.values()):
            if deadline is not None and time.monotonic() > deadline:
                break
            batch = await taskbus.direct_batch(
                self._nc,
                n.results_stream,
                {"seq": cursor, "next_by_subj": n.all_results, "batch": taskbus.BATCH},
            )
            changed = False
            for m in batch:
                cursor = m.seq + 1
                who = n.attribution(m.subject)
                body = m.json()
                if who is None or not isinstance(body, dict):
                    continue
                key = who if who in states else queued.get(who)
                if key is not None and (key == who or not states[key].final):
                    states[key] = Result(who[0], str(body.get("status", "?")), body)
                    changed = True
            if not batch:
                if time.monotonic() - last_look >= PROGRESS_EVERY:
                    last_look = time.monotonic()
                    changed = await self._look_again(sents, states) or on_update is not None
                await asyncio.sleep(pause)
                pause = min(pause * 2, POLL_LAST)
            else:
                pause = POLL_FIRST
            if changed and on_update is not None:
                on_update(list(states.values()))
        return list(states.values())

    async def _look_again(
        self, sents: Sequence[Sent], states: dict[tuple[str, str], Result]
    ) -> bool:
        """Dead letters and queued/running, for the targets still without a result."""
        waiting = [
            (s.task_id, t) for s in sents for t in s.targets if not states[(t.key, s.task_id)].final
        ]
        now = await self._whereabouts(waiting)
        changed = any(states[k].status != r.status for k, r in now.items())
        states |= now
        return changed

    # ---- the fleet's recent tasks --------------------------------------------------------

    def tasks(self, since: float = 3600, worker: str | None = None) -> list[TaskRow]:
        """Tasks sent in the last `since` seconds, from their records, with their state per
        target and any unsolicited answers; with `worker`, the tasks it was sent or
        answered."""
        return self._loop.call(self._tasks(since, worker))

    async def _tasks(self, since: float, worker: str | None) -> list[TaskRow]:
        records = await self._records_since(since)
        found = await self._results_of([r.task_id for r in records])
        waiting = [
            (r.task_id, t)
            for r in records
            for t in r.targets
            if not any((w, r.task_id) in found for w in t.workers)
        ]
        where = await self._whereabouts(waiting)
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

    async def _records_since(self, since: float) -> list[TaskRecord]:
        """Every readable record written (first or again) in the last `since` seconds."""
        n = self.names
        if self._unrecordable is not None:
            raise BusError(self._unrecordable.replace("may not write", "may not read"))
        start = (datetime.now(UTC) - timedelta(seconds=since)).isoformat()
        body: dict[str, Any] = {
            "start_time": start,
            "next_by_subj": n.all_records,
            "batch": taskbus.BATCH,
        }
        records = []
        prefix = n.record("")
        try:
            while batch := await taskbus.direct_batch(self._nc, n.record_stream, body):
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

    def stored_results(
        self, since: float | None = None, worker: str | None = None
    ) -> list[StoredResult]:
        """Every stored result (stored in the last `since` seconds), attributed by subject."""
        return self._loop.call(self._stored_results(since, worker))

    async def _stored_results(self, since: float | None, worker: str | None) -> list[StoredResult]:
        n = self.names
        subjects = n.results_of(worker) if worker else n.all_results
        body: dict[str, Any] = {"next_by_subj": subjects, "batch": taskbus.BATCH}
        if since is None:
            body["seq"] = 1
        else:
            body["start_time"] = (datetime.now(UTC) - timedelta(seconds=since)).isoformat()
        found = []
        while batch := await taskbus.direct_batch(self._nc, n.results_stream, body):
            for m in batch:
                who, result = n.attribution(m.subject), m.json()
                if who is not None and isinstance(result, dict):
                    found.append(StoredResult(who[0], who[1], {"started_at": m.time, **result}))
            body = {"seq": batch[-1].seq + 1, "next_by_subj": subjects, "batch": taskbus.BATCH}
        return found

    # ---- dead letters --------------------------------------------------------------------

    def dead_letters(self, worker: str | None = None) -> list[DeadLetter]:
        return self._loop.call(self._dead_letters(worker))

    async def _dead_letters(self, worker: str | None = None) -> list[DeadLetter]:
        n = self.names
        subjects = n.dead(worker) if worker else n.all_dead
        out = []
        for m in await taskbus.scan(self._nc, n.dead_stream, subjects):
            body = m.json()
            if isinstance(body, dict):
                out.append(DeadLetter(m.seq, m.subject.split(".")[-1], body))
        return out

    def dead_letter(self, seq: int) -> DeadLetter | None:
        async def go() -> DeadLetter | None:
            n = self.names
            m = await taskbus.msg_get(self._nc, n.dead_stream, {"seq": seq})
            body = m.json() if m is not None else None
            if m is None or not isinstance(body, dict):
                return None
            return DeadLetter(m.seq, m.subject.split(".")[-1], body)

        return self._loop.call(go())

    def replay(self, seq: int, to: Sequence[str] = ()) -> Sent:
        """Send a dead letter's original task again, to its worker or to `to`, with a new
        dedup id (the first one may still be inside the duplicate window)."""
        letter = self.dead_letter(seq)
        if letter is None:
            raise taskmsg.TaskError(f"no dead letter with sequence {seq}")
        data = letter.task()
        if data is None or letter.task_id is None:
            raise taskmsg.TaskError(
                f"dead letter {seq} cannot be replayed: "
                + ("its task was too large to keep" if data is None else "its task id is unusable")
            )
        workers = self.resolve(to or [letter.worker_id])
        return self.publish(letter.task_id, data, workers, tag=f":replay-{seq}")

    def purge_dead(self, worker: str | None = None) -> int:
        """Remove the dead letters (of one worker); how many were removed."""

        async def go() -> int:
            n = self.names
            body: dict[str, Any] = {"filter": n.dead(worker)} if worker else {}
            import json

            reply = await self._nc.request(
                f"{taskbus.API}.STREAM.PURGE.{n.dead_stream}", json.dumps(body).encode(), timeout=5
            )
            answer = json.loads(reply.data or b"{}")
            if "error" in answer:
                from fleetctl.bus.client import BusError

                raise BusError(f"purging {n.dead_stream}: {answer['error'].get('description')}")
            return int(answer.get("purged", 0))

        return self._loop.call(go())


class _DeadLetters:
    """Dead letters by (worker, task), each worker's read at most once: first its newest
    (a task just given up on is it), then, if that is another task's, all of them."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._read: dict[str, list[DeadLetter]] = {}

    async def find(self, workers: Sequence[str], task_id: str) -> DeadLetter | None:
        client, n = self._client, self._client.names
        for w in workers:
            if w not in self._read:
                newest = await taskbus.msg_get(
                    client._nc, n.dead_stream, {"last_by_subj": n.dead(w)}
                )
                body = newest.json() if newest is not None else None
                if newest is not None and isinstance(body, dict) and body.get("task_id") == task_id:
                    return DeadLetter(newest.seq, w, body)
                self._read[w] = await client._dead_letters(w) if newest is not None else []
            hit = next((d for d in reversed(self._read[w]) if d.task_id == task_id), None)
            if hit is not None:
                return hit
        return None
