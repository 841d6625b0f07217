"""One task delivery, start to end: describe -> enforce -> lease -> already done? -> cancelled?
-> budget -> run (stopped by a cancel) -> result -> spend -> store -> ack (or nak, or dead
letter and term).

The order is the guarantee: the result is stored in the results stream (PubAck received) before
the task is acked, so a crash at any point either reruns nothing (result found on redelivery) or
reruns a task whose result was never stored. Rules (docs/poller.md):
- CLI ran (any exit code, or timed out) -> result stored, ack: re-running costs money.
- CLI could not start, result could not be stored -> nak with a delay (dead letter on the last
  allowed delivery).
- bad input -> `rejected` result if the id is usable, dead letter, term.
- cancelled (poller/cancel.py) -> `cancelled` result, ack: never run, or stopped, never retried.
Before anything runs, the task's lease is taken (poller/lease.py): a task leased by another
poller is nak'd until the lease frees; a second delivery of a task id already running here
joins the running one.

This module is the flow and nothing else. It reaches the bus only through `Bus` (on
JetStream: poller/jetstream.py), builds what it stores with poller/records.py and runs the CLI
with poller/runner.py. Each step returns how the delivery ends (an `End`) or lets it go on;
`_end` is the one place a delivery is settled. A new step is one more method in `_deliver`
or `_leased`, returning an `End` or None.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypeVar

from poller import backends, limits, records, runner, streams
from poller.activity import Activity
from poller.backends import BACKENDS
from poller.cancel import Cancels
from poller.config import Config
from poller.heartbeat import Stats
from poller.lease import Held, Lease
from poller.logs import Logger
from poller.messages import STDERR_TAIL, Delivered, Rejection, Result, Task, parse_task
from poller.pause import Pause
from poller.repos import RepoError
from poller.workspace import Later, Refuse, Unusable, Workspace, Workspaces, repo_of

# Asked again this long after a lease's TTL: the server has removed an expired key by then.
LEASE_MARGIN = 0.5
# A `rejected` result is tried this long: the dead letter that follows says it all anyway.
REJECTED_STORE_RETRY = 5.0
HANDED_BACK = "handed back: the poller was stopping"
T = TypeVar("T")


class Bus(Protocol):
    """Everything the flow asks of the bus. Each call is one request and raises on failure."""

    async def last_result(self, task_id: str) -> bytes | None: ...
    async def publish_result(self, task_id: str, data: bytes) -> None: ...
    async def publish_dead_letter(self, data: bytes) -> None: ...
    async def ack(self, d: Delivered) -> None: ...
    async def nak(self, d: Delivered, delay: float | None) -> None: ...
    async def term(self, d: Delivered) -> None: ...
    async def in_progress(self, d: Delivered) -> None: ...
    async def take_lease(self, task_id: str, stream_seq: int) -> Lease | Held: ...
    def lease_holder_gone(self, held: Held) -> bool: ...
    async def take_over_lease(self, task_id: str, stream_seq: int, held: Held) -> Lease | Held: ...
    async def refresh_lease(self, lease: Lease, stream_seq: int) -> bool: ...
    async def release_lease(self, lease: Lease) -> None: ...
    async def over_budget(self) -> str | None: ...
    async def add_spend(self, cost_usd: float) -> None: ...
    async def cancelled(self, task_id: str) -> bool: ...


# -- how a delivery ends (a step decides, `_end` carries it out) ----------------------------


@dataclass(frozen=True)
class Done:
    """Its result is stored (now, or before): ack."""


@dataclass(frozen=True)
class Retry:
    """Given back for a later delivery: nak after `delay` (NAK_DELAY when None); dead letter
    and term on the last allowed delivery."""

    reason: str
    delay: float | None = None


@dataclass(frozen=True)
class Refused:
    """Bad input, or no budget left: a `rejected` result if the id is usable, dead letter,
    term."""

    rejection: Rejection


@dataclass(frozen=True)
class Dead:
    """Dead letter and term now (nak if even the dead letter cannot be stored)."""

    reason: str


@dataclass(frozen=True)
class HandBack:
    """Not run to its end here, through no fault of the task (the poller is stopping): nak
    with no delay, so that another poller takes it at once. Not a failure: never dead-lettered
    for it, but on the last allowed delivery, where the server would not deliver it again:
    there a dead letter (`fleetctl dead replay` sends it again) and term."""

    reason: str


End = Done | Retry | Refused | Dead | HandBack
DONE = Done()
Settle = Literal["ack", "nak", "term"]


@dataclass
class _InFlight:
    """Every delivery of one stream message we hold (a redelivery can join a running task)."""

    first: Delivered
    msgs: list[Delivered]
    task_id: str = ""
    lease: Lease | None = None
    # A refresh and the release never overlap (each expects the other's last write).
    lease_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reconnected: asyncio.Event = field(default_factory=asyncio.Event)
    activity: Activity | None = None  # what it is doing now, once described
    reader: streams.Reader | None = None  # its CLI's stream, once started

    @property
    def seq(self) -> int:
        return self.first.seq

    @property
    def attempt(self) -> int:
        return self.first.attempt


class Delivery:
    """Handles deliveries for one worker; shared by all concurrent slots."""

    def __init__(
        self,
        cfg: Config,
        bus: Bus,
        log: Logger,
        stats: Stats,
        *,
        ack_wait: float,
        max_deliver: int | None,
        lease_ttl: int,
        hand_back: asyncio.Event | None = None,
        pause: Pause | None = None,
        draining: asyncio.Event | None = None,
        cancels: Cancels | None = None,
    ) -> None:
        self.cfg, self.bus, self.log, self.stats = cfg, bus, log, stats
        self.pause = pause if pause is not None else Pause(stats, log, first=cfg.limit_backoff)
        # Set when the poller is stopping and its running tasks are to be handed back now.
        self.hand_back = hand_back if hand_back is not None else asyncio.Event()
        # Set when the poller drains (and so before any hand-back): a task kept for a pause
        # is handed back then, not held to the drain's deadline.
        self.draining = draining if draining is not None else self.hand_back
        self.cancels = cancels  # None: no task is checked for a cancel
        self.ack_wait, self.lease_ttl = ack_wait, lease_ttl
        self.max_deliver = max_deliver if max_deliver and max_deliver > 0 else None
        self.host = socket.gethostname()
        self.inflight: dict[int, _InFlight] = {}
        self.by_task: dict[str, _InFlight] = {}  # the task ids running here
        self.state_dir: Path | None = cfg.state_dir
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError:  # no orphan records then; systemd still cleans up the cgroup
            self.state_dir = None
        self.child_env = _child_env(os.environ, cfg)
        self.workspaces = Workspaces(cfg, log, os.environ, self.child_env, self.state_dir)

    # -- entry points ---------------------------------------------------------------------

    def join_if_running(self, d: Delivered) -> bool:
        """A redelivery of a message we are still running: keep it alive, do not run again."""
        held = self.inflight.get(d.seq)
        if held is None:
            return False
        held.msgs.append(d)
        self.log.warning("redelivered_while_running", task_id=held.task_id, stream_seq=d.seq)
        return True

    def reconnected(self) -> None:
        """After a reconnect, signal progress at once: the server's ack timer may be running."""
        for held in self.inflight.values():
            held.reconnected.set()

    async def handle(self, d: Delivered) -> None:
        """One delivery, to its end; raises nothing but the cancellation of a shutdown."""
        held = _InFlight(d, [d])
        self.inflight[d.seq] = held
        keep_alive = asyncio.create_task(self._keep_alive(held))
        try:
            await self._deliver(held)
        except asyncio.CancelledError:
            # A shutdown that could not wait any longer (the hand-back did not end it in
            # time): give the task back now rather than after ack_wait.
            self.log.warning("task_abandoned", task_id=held.task_id, stream_seq=d.seq)
            await asyncio.shield(self._hand_back(held, HANDED_BACK))
            raise
        except Exception as e:  # a bug must not kill the loop
            self.log.error("task_error", task_id=held.task_id, error=repr(e))
            why = f"poller error: {e!r}"[:2000]
            # Before the task was described it would fail every time; after, the CLI has not
            # run (after it, nothing raises): back later, dead at last.
            await self._end(held, Retry(why) if held.task_id else Dead(why))
        finally:
            keep_alive.cancel()
            self.inflight.pop(d.seq, None)
            if self.stats.running.pop(d.seq, None) is not None:
                self.stats.touch()
            if self.by_task.get(held.task_id) is held:
                del self.by_task[held.task_id]

    # -- the flow -------------------------------------------------------------------------

    async def _deliver(self, held: _InFlight) -> None:
        """The steps, in order. The lease is released after the delivery is settled."""
        task = self._describe(held.first)
        if isinstance(task, Rejection):
            await self._end(held, Refused(task))
            return
        held.task_id = task.task_id
        if self._join_same_task(held):
            return
        self.stats.running[held.seq] = held.activity = Activity(task.task_id)
        self.stats.touch()
        not_ours = await self._take_lease(held, task)
        if not_ours is not None:
            await self._end(held, not_ours)
            return
        try:
            await self._end(held, await self._leased(held, task))
        finally:
            await asyncio.shield(self._release_lease(held))

    async def _leased(self, held: _InFlight, task: Task) -> End:
        """Under the task's lease: the checks, then the CLI and everything after it."""
        for check in (self._already_done, self._not_cancelled, self._within_budget):
            end = await check(held, task)
            if end is not None:
                return end
        if self.hand_back.is_set():
            return HandBack(HANDED_BACK)
        ws = await self._workspace(held, task)
        if not isinstance(ws, Workspace):
            return ws
        stored = False
        try:
            while True:
                if self.hand_back.is_set():  # asked while the worktree was being set up
                    return HandBack(HANDED_BACK)
                try:
                    outcome = await self._run(held, task, ws.dir)
                except runner.SpawnError as e:
                    return Retry(str(e))
                if outcome is None:
                    return HandBack(HANDED_BACK)
                limit = self._limit_of(held, outcome)
                if limit is None:
                    end = await self._after_cli(held, task, outcome, ws)
                    stored = end is DONE
                    return end
                end = await self._limited(held, task, outcome, limit)
                if end is not None:
                    return end
                # Kept: run again in the same worktree, now that the pause is over.
        finally:
            # Kept for `retain` once its result is stored; otherwise a redelivery starts afresh.
            await asyncio.shield(self.workspaces.leave(ws, self.by_task, keep=stored))

    # -- the steps ------------------------------------------------------------------------

    def _describe(self, d: Delivered) -> Task | Rejection:
        """Parse the task; a budget the backend cannot enforce is refused, not ignored."""
        task = parse_task(d.data, self.cfg.max_task_bytes)
        if isinstance(task, Rejection):
            return task
        try:
            repo_of(self.cfg, task)
        except RepoError as e:
            return Rejection(str(e), task.task_id)
        if task.max_budget_usd is None or BACKENDS[self.cfg.backend].budget:
            return task
        why = f"max_budget_usd: the {self.cfg.backend} backend cannot bound a task's cost"
        return Rejection(why, task.task_id)

    def _join_same_task(self, held: _InFlight) -> bool:
        """Another message with the id of a task running here (published twice without a
        Msg-Id, or after the duplicate window): settled with the running one, never run.
        No await between the look-up and the claim, so two deliveries cannot both claim."""
        running = self.by_task.get(held.task_id)
        if running is None:
            self.by_task[held.task_id] = held
            return False
        held.msgs = []
        running.msgs.append(held.first)
        self.log.warning("same_task_running", task_id=held.task_id, stream_seq=held.seq)
        return True

    async def _take_lease(self, held: _InFlight, task: Task) -> End | None:
        """Ours (None), or how the delivery ends: nak'd until a lease held elsewhere can have
        expired (its holder's TTL), and like any failed step on the last delivery.

        A bus that fails is asked again for up to LEASE_RETRY seconds, the delivery kept
        alive meanwhile (progress signals go on), rather than given back at once: the bus
        fails like this when a broker goes down, and a task nak'd then depends on the
        consumer's next leader to deliver it again, which nats-server 2.15.1 was seen not to
        do (docs/operations.md, "Known limitations of a cluster")."""
        pauses = _backoff(self.cfg.lease_retry)
        while True:
            try:
                got = await self._lease(held, task)
                break
            except Exception as e:
                pause = next(pauses, None)
                if pause is None:
                    return Retry(f"lease: {e!r}")
                self.log.warning(
                    "lease_take_failed", task_id=task.task_id, error=repr(e), retry_in_s=pause
                )
            if await unless_set(asyncio.sleep(pause, result=True), self.hand_back) is None:
                return HandBack(HANDED_BACK)
        if isinstance(got, Lease):
            held.lease = got
            return None
        delay = (got.ttl or self.lease_ttl) + LEASE_MARGIN
        self.log.warning(
            "task_leased_elsewhere", task_id=task.task_id, holder=got.holder, retry_in_s=delay
        )
        self.stats.count("leased_elsewhere")
        return Retry(f"still leased by {got.holder}", delay)

    async def _lease(self, held: _InFlight, task: Task) -> Lease | Held:
        """One attempt at the lease; raises when the bus fails."""
        got = await self.bus.take_lease(task.task_id, held.seq)
        if isinstance(got, Held) and self.state_dir is not None and self.bus.lease_holder_gone(got):
            # Our predecessor crashed holding it: stop what it left running, take over.
            runner.kill_orphans(self.state_dir)
            self.log.warning("lease_taken_over", task_id=task.task_id, holder=got.holder)
            got = await self.bus.take_over_lease(task.task_id, held.seq, got)
        return got

    async def _already_done(self, held: _InFlight, task: Task) -> End | None:
        """Is our result for this task already stored? (see docs/poller.md) Then ack, do not
        run. A `rejected` result does not count: a corrected task with the same id must still
        run, and its result then replaces the rejection on the subject."""
        try:
            stored = await self.bus.last_result(task.task_id)
            if stored is None or records.status_of(stored) == "rejected":
                return None
        except Exception as e:
            return Retry(f"result lookup: {e!r}")
        self.log.info("already_done", task_id=task.task_id, attempt=held.attempt)
        self.stats.count("already_done")
        return DONE

    async def _not_cancelled(self, held: _InFlight, task: Task) -> End | None:
        """A task cancelled before it ran (poller/cancel.py) is not run: its `cancelled`
        result is stored and it is acked, so it leaves the queue and is never retried. A
        mark that cannot be read holds nothing up: the task runs."""
        if self.cancels is None or not self.cancels.available:
            return None
        try:
            if not await self.bus.cancelled(task.task_id):
                return None
        except Exception as e:
            self.log.warning("cancel_check_failed", task_id=task.task_id, error=repr(e))
            return None
        result = records.cancelled(self.cfg, self.host, task, held.attempt, time.time())
        if not await self._store(task.task_id, result.encode(), self.cfg.result_store_retry):
            return Retry("cannot store the result")
        self.stats.count("cancelled")
        self.log.info("task_cancelled", task_id=task.task_id, ran=False, attempt=held.attempt)
        return DONE

    async def _within_budget(self, held: _InFlight, task: Task) -> End | None:
        """No task runs on a spent daily budget, nor on one that cannot be read."""
        try:
            over = await self.bus.over_budget()
        except Exception as e:
            return Retry(f"budget lookup: {e!r}")
        return None if over is None else Refused(Rejection(over, task.task_id))

    async def _workspace(self, held: _InFlight, task: Task) -> Workspace | End:
        """The task's own directory: a fresh worktree of its repository at its base, set
        up, or an empty one (poller/workspace.py); or how the delivery ends without the CLI."""
        got = await self.workspaces.open(task, self.by_task)
        match got:
            case Workspace():
                return got
            case Refuse(reason):
                return Refused(Rejection(reason, task.task_id))
            case Later(reason):
                return Retry(reason)
            case Unusable(reason, code):
                result = records.not_run(
                    self.cfg, self.host, task, held.attempt, reason, code, time.time()
                )
                if not await self._store(
                    task.task_id, result.encode(), self.cfg.result_store_retry
                ):
                    return Retry("cannot store the result")
                self.stats.count(result.status)
                self.log.warning("task_not_run", task_id=task.task_id, reason=reason)
                return DONE

    async def _run(self, held: _InFlight, task: Task, cwd: Path) -> runner.RunOutcome | None:
        """The CLI, with the prompt on stdin, in the task's own directory; raises SpawnError
        if it cannot start. None: stopped half-way because the poller hands its tasks back
        (its processes killed)."""
        prompt = task.prompt_bytes()
        timeout = min(task.timeout or self.cfg.task_timeout, self.cfg.task_timeout)
        self.log.info(
            "task_start",
            task_id=task.task_id,
            attempt=held.attempt,
            prompt_bytes=len(prompt),
            timeout_s=timeout,
        )
        self.log.debug("task_prompt", task_id=task.task_id, prompt=task.prompt())
        activity = held.activity or Activity(task.task_id)
        held.reader = BACKENDS[self.cfg.backend].stream(activity, self.cfg.price)
        cancel = self.cancels.arm(task.task_id) if self.cancels is not None else None
        try:
            run = runner.run(
                backends.task_argv(self.cfg.backend, self.cfg.settings, self._budget(task)),
                prompt,
                timeout=timeout,
                grace=self.cfg.kill_grace,
                cap=self.cfg.output_cap,
                stderr_keep=STDERR_TAIL,
                cwd=cwd,
                env={**self.child_env, "FLEET_TASK_ID": task.task_id},
                state_dir=self.state_dir,
                on_line=self._feeding(held.reader, activity),
                stall=self.cfg.stall_timeout,
                cancel=cancel,
            )
            return await unless_set(run, self.hand_back)
        finally:
            if self.cancels is not None:
                self.cancels.disarm(task.task_id)

    def _feeding(self, reader: streams.Reader, activity: Activity) -> Callable[[bytes], None]:
        """Each stdout line to the stream's reader; a new turn, or a tool started or ended,
        makes a heartbeat go out soon (rate-limited: poller/heartbeat.py), so a waiting
        `task send --wait` sees the step, not only what an interval happened to sample."""

        def feed(line: bytes) -> None:
            before = activity.step
            reader.feed(line)
            if activity.step != before:
                self.stats.stir()

        return feed

    def _limit_of(self, held: _InFlight, outcome: runner.RunOutcome) -> limits.Limit | None:
        """Did the provider turn the CLI away (rate limit, quota, overload)? From the error
        its stream ended with, or, when it went silent waiting to retry a refused request
        (its last word), from that."""
        reader = held.reader
        if reader is None:
            return None
        said = reader.failure()
        if said is None and outcome.stalled is not None:
            said = reader.retrying
        return limits.recognise(said, time.time()) if said else None

    async def _limited(
        self, held: _InFlight, task: Task, outcome: runner.RunOutcome, limit: limits.Limit
    ) -> End | None:
        """Not the task's failure: no result, no dead letter, no delivery used up. What the
        CLI spent is counted, the worker pauses (poller/pause.py), and the task waits: a
        `pick: any` route's task goes back to its queue at once for another member (but on
        its last allowed delivery, where a nak would strand it); any other is kept here and
        run again once the pause is over (None), or handed back if the poller stops first."""
        final = held.reader.final() if held.reader is not None else None
        with contextlib.suppress(Exception):
            spent = records.ran(self.cfg, self.host, task, outcome, held.attempt, final)
            await self._count_spend(task.task_id, spent.cost_usd)
        until = self.pause.begin(limit)
        self.stats.count("limited")
        from_route = held.first.subject.startswith(f"{self.cfg.subjects.prefix}.route.")
        last = self.max_deliver is not None and held.attempt >= self.max_deliver
        requeue = from_route and not last
        self.log.warning(
            "task_limited",
            task_id=task.task_id,
            reason=limit.kind,
            paused_until=round(until, 3),
            then="back to the route's queue" if requeue else "kept until the pause is over",
        )
        if requeue:
            return HandBack(f"{limit.kind}: back to its route's queue")
        if not await self.pause.over(self.draining):
            return HandBack(HANDED_BACK)
        return None

    def _budget(self, task: Task) -> float | None:
        """The task's own budget, capped by the worker's daily budgets (`task_argv` caps it by
        the worker's per-task limit): never more than the worker may spend."""
        asked = task.max_budget_usd
        return None if asked is None else self.cfg.budget.cap(asked)

    async def _after_cli(
        self, held: _InFlight, task: Task, outcome: runner.RunOutcome, ws: Workspace
    ) -> End:
        """The CLI ran, and was paid for: whatever goes wrong from here, its spend is
        counted and a result is stored and acked, so it never runs again. Only a bus that
        cannot store the result gives the task back (docs/poller.md)."""
        try:
            final = held.reader.final() if held.reader is not None else None
            result = records.ran(self.cfg, self.host, task, outcome, held.attempt, final)
        except Exception as e:  # a bug reading the output: still a result, never a rerun
            self.log.error("result_error", task_id=task.task_id, error=repr(e))
            why = f"poller error: {e!r}"[:2000]
            result = records.unread(self.cfg, self.host, task, outcome, held.attempt, why)
        await self._count_spend(task.task_id, result.cost_usd)
        if result.status == "completed":
            self.pause.succeeded()
        await self._code(task, result, ws)
        if not await self._store(task.task_id, result.encode(), self.cfg.result_store_retry):
            return Retry("cannot store the result")
        self.stats.count(result.status)
        # A task that failed or timed out is worth a look: a warning, with why.
        level = "warning" if result.status in ("failed", "timeout") else "info"
        extra = {} if result.error is None else {"reason": result.error}
        self.log.log(
            level,
            "task_done",
            task_id=task.task_id,
            status=result.status,
            exit_code=result.exit_code,
            duration_s=result.duration_s,
            output_bytes=result.output_bytes,
            attempt=held.attempt,
            **extra,
        )
        return DONE

    async def _count_spend(self, task_id: str, cost_usd: float | None) -> None:
        """Right after the CLI ran, before anything that could fail: it is spent either way."""
        if not cost_usd:
            return
        try:
            await self.bus.add_spend(cost_usd)
        except Exception as e:  # the task is done either way; the error is logged
            self.log.error("spend_not_counted", task_id=task_id, error=repr(e))

    async def _code(self, task: Task, result: Result, ws: Workspace) -> None:
        """The change: checked, committed, pushed (the result's `code`); a change that
        could not be committed fails the task. Never raises."""
        try:
            closed = await self.workspaces.close(ws, task, result.status)
        except Exception as e:  # each step catches its own; this is a last resort
            self.log.error("code_error", task_id=task.task_id, error=repr(e))
            result.status, result.error = "failed", f"poller error: {e!r}"[:2000]
            return
        result.code = closed.code
        if closed.failed is not None:
            result.status, result.error = "failed", closed.failed

    async def _store(self, task_id: str, data: bytes, retry_for: float) -> bool:
        """Publish the result until the bus says it is stored, for up to `retry_for` s."""
        pauses = _backoff(retry_for)
        while True:
            try:
                await self.bus.publish_result(task_id, data)
                return True
            except Exception as e:
                self.log.warning("result_store_failed", task_id=task_id, error=repr(e))
            pause = next(pauses, None)
            if pause is None:
                return False
            await asyncio.sleep(pause)

    # -- the end --------------------------------------------------------------------------

    async def _end(self, held: _InFlight, end: End) -> None:
        """Carry out how the delivery ends: the one place a delivery is settled."""
        match end:
            case Done():
                await self._settle(held, "ack")
            case Retry(reason, delay):
                await self._retry_or_dead(held, reason, delay)
            case Refused(rejection):
                await self._refuse(held, rejection)
            case Dead(reason):
                await self._dead(held, held.task_id or None, reason)
            case HandBack(reason):
                # Free first: another instance of this worker may be delivered it at once.
                await self._release_lease(held)
                await self._hand_back(held, reason)

    async def _hand_back(self, held: _InFlight, reason: str) -> None:
        """Nak now, or on the last allowed delivery (a nak would leave it undelivered for
        good) a dead letter that says so, then term."""
        last = self.max_deliver is not None and held.attempt >= self.max_deliver
        self.log.warning(
            "task_handed_back",
            reason=reason,
            task_id=held.task_id,
            stream_seq=held.seq,
            attempt=held.attempt,
            dead_letter=last,
        )
        self.stats.count("handed_back")
        if last:
            why = f"{reason} on its last allowed delivery ({held.attempt} of {self.max_deliver})"
            await self._dead(held, held.task_id or None, why)
        else:
            await self._settle(held, "nak")

    async def _refuse(self, held: _InFlight, why: Rejection) -> None:
        """A `rejected` result (only to a validated id's subject), dead letter, term."""
        self.log.warning(
            "task_rejected", task_id=why.task_id, reason=why.reason, stream_seq=held.seq
        )
        self.stats.count("rejected")
        if why.task_id is not None:
            result = records.rejected(
                self.cfg, self.host, why.task_id, held.attempt, why.reason, time.time()
            )
            # A corrected task with this id still runs: `_already_done` skips rejections.
            if not await self._store(why.task_id, result.encode(), REJECTED_STORE_RETRY):
                self.log.error("rejected_result_not_stored", task_id=why.task_id)
        await self._dead(held, why.task_id, why.reason)

    async def _retry_or_dead(self, held: _InFlight, reason: str, delay: float | None) -> None:
        last = self.max_deliver is not None and held.attempt >= self.max_deliver
        self.log.error(
            "task_retry" if not last else "task_dead",
            task_id=held.task_id,
            reason=reason,
            attempt=held.attempt,
            max_deliver=self.max_deliver,
        )
        self.stats.count("retried" if not last else "dead")
        if last and await self._dead_letter(held, held.task_id, reason):
            await self._settle(held, "term")
        else:
            await self._settle(held, "nak", delay or self.cfg.nak_delay)

    async def _dead(self, held: _InFlight, task_id: str | None, reason: str) -> None:
        """Dead letter and term now; nak if even the dead letter cannot be stored."""
        if await self._dead_letter(held, task_id, reason):
            await self._settle(held, "term")
        else:
            await self._settle(held, "nak", self.cfg.nak_delay)

    async def _dead_letter(self, held: _InFlight, task_id: str | None, reason: str) -> bool:
        data = records.dead_letter(self.cfg, held.first, task_id, reason, time.time())
        try:
            await self.bus.publish_dead_letter(data)
            return True
        except Exception as e:
            self.log.error("dead_letter_failed", task_id=task_id, error=repr(e))
            return False

    async def _settle(self, held: _InFlight, how: Settle, delay: float | None = None) -> None:
        """Ack, nak or term every delivery we hold; the ack waits for the server's reply."""
        for d in held.msgs:
            try:
                if how == "ack":
                    await self.bus.ack(d)
                elif how == "nak":
                    await self.bus.nak(d, delay)
                else:
                    await self.bus.term(d)
            except Exception as e:  # the result is stored: a redelivery will be acked
                self.log.warning("settle_failed", how=how, task_id=held.task_id, error=repr(e))

    # -- alongside: progress signals and the lease ----------------------------------------

    async def _keep_alive(self, held: _InFlight) -> None:
        """`in_progress` every ack_wait/3 so a long task is not delivered again, and the
        lease refreshed with it (at least three times per lease TTL)."""
        interval = max(min(self.ack_wait, self.lease_ttl) / 3, 0.05)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.reconnected.wait(), interval)
            held.reconnected.clear()
            for d in list(held.msgs):
                with contextlib.suppress(Exception):
                    await self.bus.in_progress(d)
            await self._refresh_lease(held)

    async def _refresh_lease(self, held: _InFlight) -> None:
        async with held.lease_lock:
            if held.lease is None:
                return
            try:
                ours = await self.bus.refresh_lease(held.lease, held.seq)
            except Exception as e:  # the bus is away: the next signal tries again
                self.log.warning("lease_refresh_failed", task_id=held.task_id, error=repr(e))
                return
            if not ours:
                # Frozen past the lease's TTL: another poller may be running the task now.
                self.log.error("lease_lost", task_id=held.task_id, stream_seq=held.seq)
                held.lease = None

    async def _release_lease(self, held: _InFlight) -> None:
        async with held.lease_lock:
            if held.lease is None:
                return
            try:
                await self.bus.release_lease(held.lease)
            except Exception as e:  # it expires by itself
                self.log.warning("lease_release_failed", task_id=held.task_id, error=repr(e))
            held.lease = None


async def unless_set(aw: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`aw`'s result, or None once `stop` is set first (`aw` is then cancelled: a CLI's run
    kills its process group when cancelled)."""
    job = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
    if job.cancelled():
        return None
    return job.result()


def _child_env(env: Mapping[str, str], cfg: Config) -> dict[str, str]:
    """The CLI's environment: ours without the NATS settings (it has no business on the bus)."""
    child = {k: v for k, v in env.items() if not k.startswith("NATS_")}
    child["FLEET_WORKER_ID"] = cfg.worker_id
    child["HOME"] = cfg.home
    return child


def _backoff(retry_for: float) -> Iterator[float]:
    """The pauses between tries of a failing bus call, from now: 0.25 s doubling to 5 s, for
    as long as the next try still falls within `retry_for` seconds."""
    deadline = time.monotonic() + retry_for

    def pauses() -> Iterator[float]:
        pause = 0.25
        while time.monotonic() + pause <= deadline:
            yield pause
            pause = min(pause * 2, 5.0)

    return pauses()
