"""The Python API for coordinators: send tasks to the fleet, read and wait for results.

    from fleetctl.client import Client

    with Client.open("fleet.yaml") as fleet:  # the bus, reached as the CLI reaches it
        sent = fleet.send("Write a haiku about queues", to=["w1", "w2", "w3"])
        for result in fleet.wait(sent, timeout=600):
            print(result.worker_id, result.status, result.output)

The `fleetctl task send`, `results`, `tasks` and `dead` commands are built on this class:
there is one implementation. Targets are checked against fleet.yaml before anything is
published (fleetctl/targets.py); each target gets its own Nats-Msg-Id, so a fan-out runs
once on every target and the same task id sent again within the duplicate window runs
nothing new.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleetctl import targets, taskmsg
from fleetctl.bus import taskbus
from fleetctl.bus.client import Endpoint, connect
from fleetctl.bus.loop import Loop
from fleetctl.bus.reach import BusOptions, reach
from fleetctl.ledger import StoredResult
from fleetctl.model import Fleet
from fleetctl.natsnames import NatsNames
from fleetctl.taskmsg import Result

# Seconds between looks at the results stream while nothing is new: from the first to the
# last, doubling, back to the first when a result arrives (quick answers seen quickly, a
# long task costs ten small requests a second).
POLL_FIRST, POLL_LAST = 0.002, 0.1
PROGRESS_EVERY = 1.0  # seconds between looks at the consumers (queued / running)
MULTI_LAST = 1000  # results one batched direct get may match (nats-server: 1024, then 413)


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

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"worker_id": self.worker_id or None}
        if self.route is not None:
            out["route"] = self.route
        return out | {
            "msg_id": self.msg_id,
            "stream_seq": self.stream_seq,
            "duplicate": self.duplicate,
        }


@dataclass(frozen=True)
class Sent:
    task_id: str
    targets: tuple[Target, ...]
    at: float = field(default_factory=time.time)

    @property
    def workers(self) -> list[str]:
        return [t.worker_id for t in self.targets]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "task_id": self.task_id,
            "sent": [t.as_json() for t in self.targets],
        }


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
    """A recent task and where it stands on each of its targets."""

    task_id: str
    at: str
    states: Mapping[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "at": self.at,
            "targets": [{"worker_id": w, "state": s} for w, s in self.states.items()],
        }


def _run_by_member(
    found: Mapping[tuple[str, str], Result], task_id: str, target: Target
) -> Result | None:
    """A route target's result: the one a member of the route stored for the task."""
    return next((found[(m, task_id)] for m in target.members if (m, task_id) in found), None)


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
        return self.publish(task_id, data, workers)

    def _enqueue(self, task_id: str, data: bytes, route: str) -> Sent:
        """One copy on the route's shared queue: the first free member takes it."""
        members = targets.queues(self.fleet)[route]

        async def go() -> Target:
            msg_id = taskmsg.dedup_id(task_id, self.names.route_consumer(route))
            ack = await taskbus.publish(self._nc, self.names.route_inbox(route), data, msg_id)
            return Target("", msg_id, ack.seq, ack.duplicate, route, members)

        return Sent(task_id, (self._loop.call(go()),))

    def publish(self, task_id: str, data: bytes, workers: Sequence[str], tag: str = "") -> Sent:
        """Publish an encoded task to each of `workers` (already checked)."""

        async def one(worker: str) -> Target:
            msg_id = taskmsg.dedup_id(task_id, worker) + tag
            ack = await taskbus.publish(self._nc, self.names.inbox(worker), data, msg_id)
            return Target(worker, msg_id, ack.seq, ack.duplicate)

        async def go() -> tuple[Target, ...]:
            return tuple(await asyncio.gather(*(one(w) for w in workers)))

        return Sent(task_id, self._loop.call(go()))

    # ---- reading -------------------------------------------------------------------------

    def results(self, task_id: str) -> list[Result]:
        """Every stored result of `task_id`, one per worker, attributed by subject."""
        return self._loop.call(self._results(task_id))

    async def _results(self, task_id: str) -> list[Result]:
        taskmsg.check_task_id(task_id)
        found = await self._results_of([task_id])
        return sorted(found.values(), key=lambda r: r.worker_id)

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
        """Where each (task id, target) without a result is: dead-lettered, running or
        queued. The dead letters and each consumer are looked at once for all of them."""
        if not waiting:
            return {}
        dead = {(d.worker_id, d.task_id): d for d in await self._dead_letters()}
        infos: dict[str, dict[str, Any] | None] = {}
        out: dict[tuple[str, str], Result] = {}
        for task_id, target in waiting:
            key = (target.key, task_id)
            who = (target.worker_id, *target.members)
            letter = next((dead[(w, task_id)] for w in who if (w, task_id) in dead), None)
            if letter is not None:
                body = dict(letter.body) | {"status": "dead-lettered"}
                out[key] = Result(letter.worker_id, "dead-lettered", body)
                continue
            if target.key not in infos:
                infos[target.key] = await self._consumer(target.worker_id, target.route)
            out[key] = self._where(task_id, target, infos[target.key])
        return out

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
        """Tasks of the last `since` seconds with their state per target: from the results,
        the dead letters, and the copies still in the task stream (queued or running)."""
        return self._loop.call(self._tasks(since, worker))

    async def _tasks(self, since: float, worker: str | None) -> list[TaskRow]:
        n = self.names
        start = datetime.now(UTC) - timedelta(seconds=since)
        rows: dict[str, tuple[str, dict[str, str]]] = {}

        def note(task_id: str, at: str, wid: str, state: str) -> None:
            first, states = rows.setdefault(task_id, (at, {}))
            rows[task_id] = (min(first, at) if first else at, states)
            states.setdefault(wid, state)

        for r in await self._stored_results(since, worker):
            at = str(r.body.get("started_at") or "")
            note(r.task_id, at, r.worker_id, str(r.body.get("status", "?")))
        for d in await self._dead_letters(worker):
            at = str(d.body.get("at") or "")
            if d.task_id and at >= start.isoformat()[:19]:
                note(d.task_id, at, d.worker_id, "dead-lettered")
        infos: dict[str, dict[str, Any] | None] = {}
        inboxes = [n.inbox(worker)] if worker else [n.all_inboxes, n.all_route_inboxes]
        for subjects in inboxes:
            for m in await taskbus.scan(self._nc, n.task_stream, subjects):
                task = m.json()
                kind, name = m.subject.split(".")[-3:-1]
                if not isinstance(task, dict) or not isinstance(task.get("task_id"), str):
                    continue
                label = name if kind == "worker" else f"route:{name}"
                if label not in infos:
                    infos[label] = await self._consumer(name, name if kind == "route" else None)
                delivered = int(((infos[label] or {}).get("delivered") or {}).get("stream_seq", 0))
                state = "running" if m.seq <= delivered else "queued"
                note(task["task_id"], m.time, label, state)
        ordered = sorted(rows.items(), key=lambda kv: kv[1][0])
        return [TaskRow(tid, at, dict(sorted(states.items()))) for tid, (at, states) in ordered]

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
