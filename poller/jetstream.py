"""The delivery flow's bus, on JetStream: every request poller/delivery.py makes (its `Bus`).

One request (or one KV protocol step, for leases and spend) per method, each raising on
failure: what a failure means (retry, nak, dead letter) is the flow's to decide. Only the
worker's own subjects: its result subject, its dead-letter subject, its lease keys, the
spend keys it adds to and its cancel marks (docs/security.md).
"""

from __future__ import annotations

from typing import Any

import nats.js.errors

from poller.budget import Budget
from poller.config import Config
from poller.lease import Held, Lease, Leases
from poller.logs import Logger
from poller.messages import Delivered

PUBLISH_TIMEOUT = 5.0  # a publish's PubAck, and an ack's reply


def delivered(msg: Any) -> Delivered:
    """A JetStream delivery as the flow sees it; raises for a message that is not one
    (no `$JS.ACK` reply subject: the puller hands on none)."""
    meta = msg.metadata
    return Delivered(
        seq=int(meta.sequence.stream),
        attempt=int(meta.num_delivered),
        subject=msg.subject,
        data=msg.data,
        msg=msg,
    )


class JetStreamBus:
    """The worker's results, dead letters, acks, leases and spend counters."""

    def __init__(self, cfg: Config, js: Any, log: Logger, lease_ttl: int) -> None:
        self.cfg, self.js = cfg, js
        self.leases = Leases(cfg, js, lease_ttl)
        self.budget = Budget(js, cfg.spend_bucket, cfg.worker_id, cfg.budget, log)

    # -- results and dead letters ---------------------------------------------------------

    async def last_result(self, task_id: str) -> bytes | None:
        """Our stored result for this task, None when there is none: a direct get of the
        last message on our own result subject (the only results this worker may read)."""
        try:
            last = await self.js.get_msg(
                self.cfg.results_stream, subject=self.cfg.subjects.result(task_id), direct=True
            )
        except nats.js.errors.NotFoundError:
            return None
        return last.data or b""

    async def publish_result(self, task_id: str, data: bytes) -> None:
        """Store a result; returns once the PubAck says it is stored.

        No Nats-Msg-Id: JetStream dedups ids across the whole stream, so any worker that
        guessed ours could have our result dropped. The stream keeps one message per
        (worker, task) subject instead, so a retry replaces an identical copy."""
        await self.js.publish(
            self.cfg.subjects.result(task_id),
            data,
            timeout=PUBLISH_TIMEOUT,
            stream=self.cfg.results_stream,
        )

    async def publish_dead_letter(self, data: bytes) -> None:
        """No Nats-Msg-Id, as for results: the dedup is stream-wide, so a worker that guessed
        the id (the task's stream sequence) could have our dead letter dropped."""
        await self.js.publish(
            self.cfg.subjects.dead, data, timeout=PUBLISH_TIMEOUT, stream=self.cfg.dead_stream
        )

    async def cancelled(self, task_id: str) -> bool:
        """Is there a cancel mark for this task on this worker (poller/cancel.py)? A direct
        get of its own key, named in the request subject (the only marks it may read)."""
        stream = f"KV_{self.cfg.cancel_bucket}"
        key = f"$KV.{self.cfg.cancel_bucket}.{self.cfg.worker_id}.{task_id}"
        try:
            mark = await self.js.get_msg(stream, subject=key, direct=True)
        except nats.js.errors.NotFoundError:
            return False
        return (mark.headers or {}).get("KV-Operation") not in ("DEL", "PURGE")

    # -- the delivery ---------------------------------------------------------------------

    async def ack(self, d: Delivered) -> None:
        """Waits for the server's reply: the flow counts a task done only once it is acked."""
        await d.msg.ack_sync(timeout=PUBLISH_TIMEOUT)

    async def nak(self, d: Delivered, delay: float | None) -> None:
        await d.msg.nak(delay=delay)

    async def term(self, d: Delivered) -> None:
        await d.msg.term()

    async def in_progress(self, d: Delivered) -> None:
        await d.msg.in_progress()

    # -- the lease (poller/lease.py) ------------------------------------------------------

    async def take_lease(self, task_id: str, stream_seq: int) -> Lease | Held:
        return await self.leases.take(task_id, stream_seq)

    def lease_holder_gone(self, held: Held) -> bool:
        """Not a request: the holder's record read against this machine (`Leases.gone`)."""
        return self.leases.gone(held)

    async def take_over_lease(self, task_id: str, stream_seq: int, held: Held) -> Lease | Held:
        return await self.leases.take_over(task_id, stream_seq, held)

    async def refresh_lease(self, lease: Lease, stream_seq: int) -> bool:
        return await self.leases.refresh(lease, stream_seq)

    async def release_lease(self, lease: Lease) -> None:
        await self.leases.release(lease)

    # -- the spend (poller/budget.py) -----------------------------------------------------

    async def over_budget(self) -> str | None:
        return await self.budget.over()

    async def add_spend(self, cost_usd: float) -> None:
        await self.budget.add(cost_usd)
