"""One task message from delivery to ack: check, run, store the result, then ack.

The order is the guarantee: the result is stored in the results stream (PubAck received) before
the task is acked, so a crash at any point either reruns nothing (result found on redelivery) or
reruns a task whose result was never stored. Rules (docs/poller.md):
- CLI ran (any exit code, or timed out) -> result stored, ack: re-running costs money.
- CLI could not start, result could not be stored -> nak with a delay (dead letter on the last
  allowed delivery).
- bad input -> `rejected` result if the id is usable, dead letter, term.
Before anything runs, the task's lease is taken (poller/lease.py): a task leased by another
poller is nak'd until the lease frees; a second delivery of a task id already running here
joins the running one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.js.errors

from poller import __version__, backends, gitpr, pricing, runner
from poller.backends import BACKENDS
from poller.budget import Budget
from poller.config import Config
from poller.heartbeat import Stats
from poller.lease import Held, Lease, Leases
from poller.logs import Logger
from poller.messages import STDERR_TAIL, Rejection, Result, Task, parse_task

DEAD_TASK_KEEP = 512 * 1024  # the original task is embedded in a dead letter up to this size
PUBLISH_TIMEOUT = 5.0
# A lease outlives this many ack waits without a refresh: a poller frozen for less than that
# keeps its task; a dead one's task runs again after at most that long.
LEASE_TTL_ACK_WAITS = 3
# Asked again this long after a lease's TTL: the server has removed an expired key by then.
LEASE_MARGIN = 0.5


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


@dataclass
class _InFlight:
    """Every delivery of one stream message we hold (a redelivery can join a running task)."""

    msgs: list[Any]
    seq: int = 0
    task_id: str = ""
    lease: Lease | None = None
    # A refresh and the release never overlap (each expects the other's last write).
    lease_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reconnected: asyncio.Event = field(default_factory=asyncio.Event)


class Delivery:
    """Handles messages for one worker; shared by all concurrent slots."""

    def __init__(
        self,
        cfg: Config,
        nc: Any,
        js: Any,
        log: Logger,
        stats: Stats,
        ack_wait: float,
        max_deliver: int | None,
    ) -> None:
        self.cfg, self.nc, self.js, self.log, self.stats = cfg, nc, js, log, stats
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver if max_deliver and max_deliver > 0 else None
        self.host = socket.gethostname()
        self.inflight: dict[int, _InFlight] = {}
        self.by_task: dict[str, _InFlight] = {}  # the task ids running here
        self.lease_ttl = cfg.lease_ttl or max(math.ceil(LEASE_TTL_ACK_WAITS * ack_wait), 1)
        self.leases = Leases(cfg, js, self.lease_ttl)
        self.budget = Budget(js, cfg.spend_bucket, cfg.worker_id, cfg.budget, log)
        self.state_dir: Path | None = cfg.state_dir
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError:  # no orphan records then; systemd still cleans up the cgroup
            self.state_dir = None
        self.child_env = _child_env(os.environ, cfg)

    # -- entry points ---------------------------------------------------------------------

    def join_if_running(self, msg: Any) -> bool:
        """A redelivery of a message we are still running: keep it alive, do not run again."""
        seq = msg.metadata.sequence.stream
        held = self.inflight.get(seq)
        if held is None:
            return False
        held.msgs.append(msg)
        self.log.warning("redelivered_while_running", task_id=held.task_id, stream_seq=seq)
        return True

    def reconnected(self) -> None:
        """After a reconnect, signal progress at once: the server's ack timer may be running."""
        for held in self.inflight.values():
            held.reconnected.set()

    async def handle(self, msg: Any) -> None:
        try:
            meta = msg.metadata
            seq, attempt = int(meta.sequence.stream), int(meta.num_delivered)
        except Exception as e:  # not a JetStream delivery (the puller lets none through)
            self.log.error("not_a_task_delivery", subject=msg.subject, error=repr(e))
            return
        held = _InFlight([msg], seq)
        self.inflight[seq] = held
        progress = asyncio.create_task(self._progress(held))
        try:
            parsed = parse_task(msg.data, self.cfg.max_task_bytes)
            if isinstance(parsed, Task):
                parsed = self._enforceable(parsed)
            if isinstance(parsed, Rejection):
                await self._reject(held, parsed, seq, attempt)
                return
            held.task_id = parsed.task_id
            if self._join_same_task(held, msg):
                return
            self.stats.running[seq] = (parsed.task_id, time.monotonic())
            await self._process(held, parsed, seq, attempt)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: give the task back now rather than after ack_wait.
            self.log.warning("task_abandoned", task_id=held.task_id, stream_seq=seq)
            await asyncio.shield(self._settle(held, "nak"))
            raise
        except Exception as e:  # a bug must not kill the loop
            self.log.error("task_error", task_id=held.task_id, error=repr(e))
            why = f"poller error: {e!r}"[:2000]
            if not held.task_id:  # before the task was described: it would fail every time
                await self._dead(held, None, seq, attempt, why)
            else:  # the CLI has not run (after it, nothing raises): back later, dead at last
                await self._retry_or_dead(held, held.task_id, seq, attempt, why)
        finally:
            progress.cancel()
            self.inflight.pop(seq, None)
            self.stats.running.pop(seq, None)
            if self.by_task.get(held.task_id) is held:
                del self.by_task[held.task_id]

    def _join_same_task(self, held: _InFlight, msg: Any) -> bool:
        """Another message with the id of a task running here (published twice without a
        Msg-Id, or after the duplicate window): settled with the running one, never run.
        No await between the look-up and the claim, so two deliveries cannot both claim."""
        running = self.by_task.get(held.task_id)
        if running is None:
            self.by_task[held.task_id] = held
            return False
        held.msgs = []
        running.msgs.append(msg)
        self.log.warning("same_task_running", task_id=held.task_id, stream_seq=held.seq)
        return True

    # -- the steps ------------------------------------------------------------------------

    def _enforceable(self, task: Task) -> Task | Rejection:
        """A budget the backend cannot enforce is refused, not silently ignored."""
        if task.max_budget_usd is None or BACKENDS[self.cfg.backend].budget:
            return task
        why = f"max_budget_usd: the {self.cfg.backend} backend cannot bound a task's cost"
        return Rejection(why, task.task_id)

    def _budget(self, task: Task) -> float | None:
        """The task's own budget, capped by the worker's daily budgets (`task_argv` caps it by
        the worker's per-task limit): never more than the worker may spend."""
        asked = task.max_budget_usd
        return None if asked is None else self.cfg.budget.cap(asked)

    async def _process(self, held: _InFlight, task: Task, seq: int, attempt: int) -> None:
        """Under the task's lease, or not at all."""
        if not await self._take_lease(held, task.task_id, seq, attempt):
            return
        try:
            await self._run_task(held, task, seq, attempt)
        finally:
            await asyncio.shield(self._release_lease(held))

    async def _run_task(self, held: _InFlight, task: Task, seq: int, attempt: int) -> None:
        log = self.log
        try:
            stored = await self._result_stored(task.task_id)
        except Exception as e:
            await self._retry_or_dead(held, task.task_id, seq, attempt, f"result lookup: {e!r}")
            return
        if stored:
            log.info("already_done", task_id=task.task_id, attempt=attempt)
            self.stats.count("already_done")
            await self._settle(held, "ack")
            return
        try:
            over = await self.budget.over()
        except Exception as e:
            await self._retry_or_dead(held, task.task_id, seq, attempt, f"budget lookup: {e!r}")
            return
        if over is not None:
            await self._reject(held, Rejection(over, task.task_id), seq, attempt)
            return
        prompt = task.prompt_bytes()
        timeout = min(task.timeout or self.cfg.task_timeout, self.cfg.task_timeout)
        log.info(
            "task_start",
            task_id=task.task_id,
            attempt=attempt,
            prompt_bytes=len(prompt),
            timeout_s=timeout,
        )
        log.debug("task_prompt", task_id=task.task_id, prompt=task.prompt())
        env = {**self.child_env, "FLEET_TASK_ID": task.task_id}
        try:
            outcome = await runner.run(
                backends.task_argv(self.cfg.backend, self.cfg.settings, self._budget(task)),
                prompt,
                timeout=timeout,
                grace=self.cfg.kill_grace,
                cap=self.cfg.output_cap,
                stderr_keep=STDERR_TAIL,
                cwd=self.cfg.work_dir,
                env=env,
                state_dir=self.state_dir,
            )
        except runner.SpawnError as e:
            await self._retry_or_dead(held, task.task_id, seq, attempt, str(e))
            return
        await self._after_cli(held, task, outcome, seq, attempt)

    async def _after_cli(
        self, held: _InFlight, task: Task, outcome: runner.RunOutcome, seq: int, attempt: int
    ) -> None:
        """The CLI ran, and was paid for: whatever goes wrong from here, its spend is
        counted and a result is stored and acked, so it never runs again. Only a bus that
        cannot store the result gives the task back (docs/poller.md)."""
        log = self.log
        try:
            result = self._result(task, outcome, attempt)
        except Exception as e:  # a bug reading the output: still a result, never a rerun
            log.error("result_error", task_id=task.task_id, error=repr(e))
            result = self._bare_result(task, outcome, attempt, f"poller error: {e!r}"[:2000])
        await self._count_spend(task.task_id, result.cost_usd)
        if self.cfg.create_pr and result.status == "completed":
            try:
                if await gitpr.is_repo_with_changes(self.cfg.work_dir):
                    result.git = await gitpr.commit_and_push(
                        self.cfg.work_dir,
                        task.task_id,
                        self.cfg.github_remote,
                        task.instructions,
                    )
            except Exception as e:  # gitpr catches its own; this is a last resort
                result.git = {"error": f"poller error: {e!r}"[:2000]}
        data = result.encode()
        if not await self._store(task.task_id, data):
            await self._retry_or_dead(held, task.task_id, seq, attempt, "cannot store the result")
            return
        self.stats.count(result.status)
        log.info(
            "task_done",
            task_id=task.task_id,
            status=result.status,
            exit_code=result.exit_code,
            duration_s=result.duration_s,
            output_bytes=result.output_bytes,
            attempt=attempt,
        )
        await self._settle(held, "ack")

    async def _count_spend(self, task_id: str, cost_usd: float | None) -> None:
        """Right after the CLI ran, before anything that could fail: it is spent either way."""
        if not cost_usd:
            return
        try:
            await self.budget.add(cost_usd)
        except Exception as e:  # the task is done either way; the error is logged
            self.log.error("spend_not_counted", task_id=task_id, error=repr(e))

    def _bare_result(self, task: Task, out: runner.RunOutcome, attempt: int, error: str) -> Result:
        """A `failed` result with nothing read from the CLI's output, and the reason."""
        return Result(
            task_id=task.task_id,
            worker_id=self.cfg.worker_id,
            backend=self.cfg.backend,
            llm=self.cfg.llm,
            model=self.cfg.model,
            status="failed",
            exit_code=out.returncode,
            output="",
            output_truncated=out.stdout_bytes > 0,
            output_bytes=out.stdout_bytes,
            stderr_tail="",
            started_at=_iso(out.started),
            ended_at=_iso(out.ended),
            duration_s=round(out.duration, 3),
            attempt=attempt,
            host=self.host,
            poller_version=__version__,
            error=error,
            cost_source="unknown",
        )

    def _result(self, task: Task, out: runner.RunOutcome, attempt: int) -> Result:
        text = out.stdout.decode(errors="replace")
        stderr = out.stderr_tail.decode(errors="replace")
        parsed = backends.parse_output(self.cfg.backend, text, not out.stdout_truncated, stderr)
        if out.timed_out:
            status = "timeout"
        elif out.returncode == 0 and not parsed.is_error:
            status = "completed"
        else:
            status = "failed"
        cost_usd, cost_source = pricing.cost(parsed, self.cfg.price, self.cfg.trust_reported_cost)
        return Result(
            task_id=task.task_id,
            worker_id=self.cfg.worker_id,
            backend=self.cfg.backend,
            llm=self.cfg.llm,
            model=self.cfg.model,
            status=status,
            exit_code=out.returncode,
            output=parsed.output,
            output_truncated=out.stdout_truncated,
            output_bytes=out.stdout_bytes,
            stderr_tail=stderr,
            started_at=_iso(out.started),
            ended_at=_iso(out.ended),
            duration_s=round(out.duration, 3),
            attempt=attempt,
            host=self.host,
            poller_version=__version__,
            usage=parsed.usage,
            cost_usd=cost_usd,
            cost_source=cost_source,
            task_type=task.task_type,
            reply_to=task.reply_to,
            sender=task.sender,
            metadata=task.metadata,
            labels=dict(self.cfg.labels),
        )

    async def _reject(self, held: _InFlight, why: Rejection, seq: int, attempt: int) -> None:
        """Bad input: a `rejected` result (only to a validated id's subject), dead letter, term."""
        self.log.warning("task_rejected", task_id=why.task_id, reason=why.reason, stream_seq=seq)
        self.stats.count("rejected")
        if why.task_id is not None:
            now = time.time()
            result = Result(
                task_id=why.task_id,
                worker_id=self.cfg.worker_id,
                backend=self.cfg.backend,
                llm=self.cfg.llm,
                model=self.cfg.model,
                status="rejected",
                exit_code=None,
                output="",
                output_truncated=False,
                output_bytes=0,
                stderr_tail="",
                started_at=_iso(now),
                ended_at=_iso(now),
                duration_s=0.0,
                attempt=attempt,
                host=self.host,
                poller_version=__version__,
                labels=dict(self.cfg.labels),
                error=why.reason,
            )
            # A corrected task with this id still runs: `_result_stored` skips rejections.
            stored = await self._store(why.task_id, result.encode(), PUBLISH_TIMEOUT)
            if not stored:
                self.log.error("rejected_result_not_stored", task_id=why.task_id)
        await self._dead(held, why.task_id, seq, attempt, why.reason)

    async def _dead(
        self, held: _InFlight, task_id: str | None, seq: int, attempt: int, reason: str
    ) -> None:
        """Dead letter and term now; nak if even the dead letter cannot be stored."""
        if await self._dead_letter(held.msgs[0], task_id, seq, attempt, reason):
            await self._settle(held, "term")
        else:
            await self._settle(held, "nak", self.cfg.nak_delay)

    async def _retry_or_dead(
        self,
        held: _InFlight,
        task_id: str,
        seq: int,
        attempt: int,
        reason: str,
        delay: float | None = None,
    ) -> None:
        last = self.max_deliver is not None and attempt >= self.max_deliver
        self.log.error(
            "task_retry" if not last else "task_dead",
            task_id=task_id,
            reason=reason,
            attempt=attempt,
            max_deliver=self.max_deliver,
        )
        self.stats.count("retried" if not last else "dead")
        if last and await self._dead_letter(held.msgs[0], task_id, seq, attempt, reason):
            await self._settle(held, "term")
        else:
            await self._settle(held, "nak", delay or self.cfg.nak_delay)

    # -- the lease ------------------------------------------------------------------------

    async def _take_lease(self, held: _InFlight, task_id: str, seq: int, attempt: int) -> bool:
        """Ours, or the delivery is settled: nak'd until a lease held elsewhere can have
        expired (its holder's TTL), and like any failed step on the last delivery."""
        try:
            got = await self.leases.take(task_id, seq)
            if isinstance(got, Held) and self.state_dir is not None and self.leases.gone(got):
                # Our predecessor crashed holding it: stop what it left running, take over.
                runner.kill_orphans(self.state_dir)
                self.log.warning("lease_taken_over", task_id=task_id, holder=got.holder)
                got = await self.leases.take_over(task_id, seq, got)
        except Exception as e:
            await self._retry_or_dead(held, task_id, seq, attempt, f"lease: {e!r}")
            return False
        if isinstance(got, Lease):
            held.lease = got
            return True
        delay = (got.ttl or self.lease_ttl) + LEASE_MARGIN
        self.log.warning(
            "task_leased_elsewhere", task_id=task_id, holder=got.holder, retry_in_s=delay
        )
        self.stats.count("leased_elsewhere")
        await self._retry_or_dead(
            held, task_id, seq, attempt, f"still leased by {got.holder}", delay=delay
        )
        return False

    async def _refresh_lease(self, held: _InFlight) -> None:
        async with held.lease_lock:
            if held.lease is None:
                return
            try:
                ours = await self.leases.refresh(held.lease, held.seq)
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
                await self.leases.release(held.lease)
            except Exception as e:  # it expires by itself
                self.log.warning("lease_release_failed", task_id=held.task_id, error=repr(e))
            held.lease = None

    # -- JetStream ------------------------------------------------------------------------

    async def _result_stored(self, task_id: str) -> bool:
        """Is our result for this task already in the results stream? (see docs/poller.md)

        A direct get of the last message on our own result subject (the only results this
        worker may read). A `rejected` result does not count: a corrected task with the same
        id must still run, and its result then replaces the rejection on the subject.
        """
        try:
            last = await self.js.get_msg(
                self.cfg.results_stream, subject=self.cfg.subjects.result(task_id), direct=True
            )
        except nats.js.errors.NotFoundError:
            return False
        return _status_of(last.data) != "rejected"

    async def _store(self, task_id: str, data: bytes, retry_for: float | None = None) -> bool:
        """Publish the result through JetStream until the PubAck says it is stored.

        No Nats-Msg-Id: JetStream dedups ids across the whole stream, so any worker that
        guessed ours could have our result dropped. The stream keeps one message per
        (worker, task) subject instead, so a retry replaces an identical copy."""
        deadline = time.monotonic() + (retry_for or self.cfg.result_store_retry)
        pause = 0.25
        while True:
            try:
                await self.js.publish(
                    self.cfg.subjects.result(task_id),
                    data,
                    timeout=PUBLISH_TIMEOUT,
                    stream=self.cfg.results_stream,
                )
                return True
            except Exception as e:
                self.log.warning("result_store_failed", task_id=task_id, error=repr(e))
            if time.monotonic() + pause > deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _dead_letter(
        self, msg: Any, task_id: str | None, seq: int, attempt: int, reason: str
    ) -> bool:
        record: dict[str, Any] = {
            "version": 1,
            "worker_id": self.cfg.worker_id,
            "task_id": task_id,
            "reason": reason,
            "attempt": attempt,
            "stream": self.cfg.task_stream,
            "stream_seq": seq,
            "subject": msg.subject,
            "at": _iso(time.time()),
            "task_bytes": len(msg.data),
        }
        if len(msg.data) <= DEAD_TASK_KEEP:
            record["task_b64"] = base64.b64encode(msg.data).decode()
        data = json.dumps(record).encode()
        # No Nats-Msg-Id, as for results: the dedup is stream-wide, so a worker that guessed
        # the id (the task's stream sequence) could have our dead letter dropped.
        try:
            await self.js.publish(
                self.cfg.subjects.dead, data, timeout=PUBLISH_TIMEOUT, stream=self.cfg.dead_stream
            )
            return True
        except Exception as e:
            self.log.error("dead_letter_failed", task_id=task_id, error=repr(e))
            return False

    async def _settle(self, held: _InFlight, how: str, delay: float | None = None) -> None:
        """Ack, nak or term every delivery we hold; the ack waits for the server's reply."""
        for m in held.msgs:
            try:
                if how == "ack":
                    await m.ack_sync(timeout=PUBLISH_TIMEOUT)
                elif how == "nak":
                    await m.nak(delay=delay)
                else:
                    await m.term()
            except Exception as e:  # the result is stored: a redelivery will be acked
                self.log.warning("settle_failed", how=how, task_id=held.task_id, error=repr(e))

    async def _progress(self, held: _InFlight) -> None:
        """`in_progress` every ack_wait/3 so a long task is not delivered again, and the
        lease refreshed with it (at least three times per lease TTL)."""
        interval = max(min(self.ack_wait, self.lease_ttl) / 3, 0.05)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.reconnected.wait(), interval)
            held.reconnected.clear()
            for m in list(held.msgs):
                with contextlib.suppress(Exception):
                    await m.in_progress()
            await self._refresh_lease(held)


def _status_of(data: bytes | None) -> str | None:
    """The `status` of a stored result (our own subject: our own JSON), None if unreadable."""
    try:
        obj = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    status = obj.get("status") if isinstance(obj, dict) else None
    return status if isinstance(status, str) else None


def _child_env(env: Mapping[str, str], cfg: Config) -> dict[str, str]:
    """The CLI's environment: ours without the NATS settings (it has no business on the bus)."""
    child = {k: v for k, v in env.items() if not k.startswith("NATS_")}
    child["FLEET_WORKER_ID"] = cfg.worker_id
    child["HOME"] = cfg.home
    return child
