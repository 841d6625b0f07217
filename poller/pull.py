"""Pull one task at a time from the worker's durable consumer, with long pull requests.

The pull protocol is spoken directly (a plain subscription on the worker's inbox, requests
to `$JS.API.CONSUMER.MSG.NEXT`) rather than through nats.py's pull subscription, for two
reasons:

- **An idle worker is quiet.** A request waits at the server for up to PULL_EXPIRES, so a
  hundred idle workers send a few requests a second instead of a hundred (each one crossing
  the worker's tunnel and waking the broker).
- **Stopping never strands a task**, however long the request had left. `close()` withdraws
  the inbox's interest (UNSUB), then a PING/PONG round trip brings in whatever the server
  sent before it saw the UNSUB; every task among that is nak'd at once. The server drops a
  waiting request whose reply subject has no interest, so a task published afterwards goes
  to the next pull with its delivery count untouched (tests/integration/test_poller_pull.py).

A request that ends without a task (408: expired) is simply asked again. A request the
server may have lost (a reconnect) is asked again at once. While a request waits, the server
says so every HEARTBEAT (a `100 Idle Heartbeat` status on its reply subject); one not heard
of for LOST_AFTER is asked again: on a cluster, the broker the poller is connected to can
lose its routes to the consumer's leader (its link cut, then back) without the connection
ever dropping, and the request with them. A task that arrives when none was asked for (the answer to
a request given up for lost) is nak'd: holding it would run its ack_wait clock unwatched.

**Anything else that lands in the inbox is logged and dropped, never handed on.** Another
worker can make the server send messages here: it publishes on a subject of its own with
this inbox as the reply subject, and JetStream's PubAck, an API or direct-get response, a
no-responders status, or even a task of *its* consumer (a pull request with our reply
subject) arrives here; nats-server has no permission on reply subjects
(docs/security.md). So a task is only what JetStream delivered from this puller's own
consumer (its ack subject names our stream and consumer: no client may publish with a
`$JS.ACK` reply subject), and a status only counts on the reply subject of the request
outstanding now: each request has a random token of its own (`<inbox>.<token>`), which no
other connection ever sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any

from poller.logs import Logger

PULL_EXPIRES = 30.0  # seconds a pull request may wait at the server
HEARTBEAT = 5.0  # while it waits, the server says so this often
LOST_AFTER = 3 * HEARTBEAT  # nothing heard of it this long: the request was lost, ask again
CLOSE_TIMEOUT = 2.0  # the most a stop waits for the server's PONG


class PullError(Exception):
    """The server ended a pull request with an error (409: consumer deleted, leadership
    change, server shutdown, ...): worth a retry after a pause."""


def _status(msg: Any) -> str | None:
    headers = getattr(msg, "headers", None)
    return headers.get("Status") if headers else None


async def give_back(msg: Any, log: Logger | None, why: str) -> None:
    """Nak a task this puller received but the worker will not run (it stops, or has no
    slot for it): delivered again at once, to whoever asks next. Logged with the task's id
    (when its body names one): that later delivery is not its first, and a reader of the
    logs can tell it was never run here."""
    with contextlib.suppress(Exception):
        await msg.nak()
    if log is not None:
        task_id = None
        with contextlib.suppress(Exception):
            body = json.loads(msg.data)
            task_id = str(body.get("task_id"))[:200] if isinstance(body, dict) else None
        log.info("task_given_back_unrun", task_id=task_id, why=why)


def _from_consumer(msg: Any, stream: str, consumer: str) -> bool:
    """Delivered by JetStream from this stream's consumer (its `$JS.ACK` reply says so)?"""
    try:
        meta = msg.metadata
    except Exception:  # no reply, or not an ack subject
        return False
    return bool(meta.stream == stream and meta.consumer == consumer)


class Puller:
    def __init__(self, nc: Any, stream: str, consumer: str, log: Logger | None = None) -> None:
        self._nc = nc
        self._stream, self._consumer = stream, consumer
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._token = ""  # the outstanding request's, in its reply subject
        self._arrived: asyncio.Queue[Any] = asyncio.Queue()
        self._asked_at: float | None = None  # when the outstanding request was sent
        self._heard_at = 0.0  # when the server last said it waits (or it was sent)
        self._wake = asyncio.Event()
        self._sub: Any = None
        self._log = log
        self.requests = 0  # pull requests sent (tests count them)
        self.dropped = 0  # messages that were neither our tasks nor our answers

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)

    async def reopen(self) -> None:
        """Start again after `close()`, on a new inbox: a request withdrawn on the old one
        must stay without interest (the server drops it instead of answering)."""
        self._inbox = self._nc.new_inbox()
        await self.start()

    async def ask_again(self) -> None:
        """After a reconnect: the server may have lost the outstanding request, or may not
        have. A request sent while disconnected was kept by the client and sent on
        reconnecting, and one from before may have survived; either would take a task
        while we hold none asked for, and that task would be nak'd, its delivery count
        spent. So ask again on a new inbox and withdraw the old one: the server drops a
        waiting request whose reply has no interest."""
        old = self._sub
        if old is not None:
            self._inbox = self._nc.new_inbox()
            self._sub = None
            await self.start()
        self._asked_at = None
        self._wake.set()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()

    async def _on_message(self, msg: Any) -> None:
        """Never raises: whatever arrives, the puller keeps going."""
        try:
            await self._sort(msg)
        except Exception as e:
            self._drop(msg, f"unreadable: {e!r}")

    async def _sort(self, msg: Any) -> None:
        status = _status(msg)
        if status is None:
            if not _from_consumer(msg, self._stream, self._consumer):
                self._drop(msg, "not a task of this consumer")
            elif self._asked_at is None:
                await give_back(msg, self._log, "arrived when none was asked for")
            else:
                self._answered(msg)
            return
        if self._asked_at is None or msg.subject != f"{self._inbox}.{self._token}":
            return  # the answer to a request given up (expired, or lost), or not ours
        if status == "100":  # a heartbeat: the request still waits at the server
            self._heard_at = time.monotonic()
        else:
            self._answered(msg if status not in ("404", "408") else None)

    def _answered(self, msg: Any | None) -> None:
        """Batch 1: any answer ends the request; a task, or an error for next() to raise."""
        self._asked_at = None
        if msg is not None:
            self._arrived.put_nowait(msg)
        self._wake.set()

    def _drop(self, msg: Any, why: str) -> None:
        self.dropped += 1
        if self._log is not None:
            self._log.warning(
                "unexpected_message",
                consumer=self._consumer,
                subject=str(getattr(msg, "subject", ""))[:200],
                reply=str(getattr(msg, "reply", ""))[:200],
                bytes=len(getattr(msg, "data", b"") or b""),
                why=why,
            )

    async def _ask(self) -> None:
        body = {
            "batch": 1,
            "expires": int(PULL_EXPIRES * 1e9),
            "idle_heartbeat": int(HEARTBEAT * 1e9),
        }
        self._token = secrets.token_hex(8)
        reply = f"{self._inbox}.{self._token}"
        await self._nc.publish(self._subject, json.dumps(body).encode(), reply=reply)
        self._asked_at = self._heard_at = time.monotonic()
        self.requests += 1

    async def next(self, stop: asyncio.Event) -> Any | None:
        """The next task, or None once `stop` is set. Raises PullError for a refused request."""
        while not stop.is_set():
            if not self._arrived.empty():
                msg = self._arrived.get_nowait()
                status = _status(msg)
                if status is not None:
                    description = msg.headers.get("Description", "") if msg.headers else ""
                    raise PullError(f"{status} {description}".strip())
                return msg
            if self._asked_at is None or time.monotonic() - self._heard_at > LOST_AFTER:
                await self._ask()
            assert self._asked_at is not None
            self._wake.clear()
            waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
            left = self._heard_at + LOST_AFTER - time.monotonic()
            try:
                await asyncio.wait(waiters, timeout=max(left, 0), return_when="FIRST_COMPLETED")
            finally:
                for w in waiters:
                    w.cancel()
        return None

    async def close(self) -> None:
        """Withdraw interest, take in what the server had already sent, and nak every task
        among it (not waiting for the next poller's ack_wait)."""
        if self._sub is not None:
            # UNSUB, PING/PONG, then every pending callback; bounded, as the server may be
            # unreachable (and then it has nothing in flight for us to give back).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.drain(), CLOSE_TIMEOUT)
        self._asked_at = None
        while not self._arrived.empty():
            msg = self._arrived.get_nowait()
            if _status(msg) is None:
                await give_back(msg, self._log, "arrived as the pull stopped")


class Pullers:
    """The worker's own consumer and the shared queues it belongs to (`pick: any` routes):
    one task at a time from whichever has one first.

    While a slot is free every puller has a long request waiting at the server. When one
    answers, the others' requests are withdrawn (their `close()`: nothing is left waiting
    for a worker that has no slot), and asked again at the next free slot. A task that
    arrived on another puller in that instant is nak'd at once, as a stop does, so it goes
    to the next free member without waiting for its ack_wait."""

    def __init__(
        self, nc: Any, stream: str, consumers: list[str], log: Logger | None = None
    ) -> None:
        self._pullers = [Puller(nc, stream, c, log) for c in consumers]
        self._log = log
        self._open: set[int] = set()

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self._pullers)

    @property
    def dropped(self) -> int:
        return sum(p.dropped for p in self._pullers)

    async def start(self) -> None:
        for i, p in enumerate(self._pullers):
            if i not in self._open:
                await (p.reopen() if p.requests else p.start())
                self._open.add(i)

    async def ask_again(self) -> None:
        for i, p in enumerate(self._pullers):
            if i in self._open:
                await p.ask_again()

    async def next(self, stop: asyncio.Event) -> Any | None:
        if stop.is_set():
            return None
        await self.start()
        done_asking = asyncio.Event()
        stopper = asyncio.ensure_future(stop.wait())
        stopper.add_done_callback(lambda _f: done_asking.set())
        asks = [asyncio.ensure_future(p.next(done_asking)) for p in self._pullers]
        try:
            await asyncio.wait(asks, return_when=asyncio.FIRST_COMPLETED)
            done_asking.set()
            await asyncio.wait(asks)
        finally:
            stopper.cancel()
        got: Any | None = None
        error: BaseException | None = None
        for i, ask in enumerate(asks):
            if ask.exception() is not None:
                error = error or ask.exception()
                continue
            msg = ask.result()
            if msg is not None and got is None and not stop.is_set():
                got = msg
                continue
            if msg is not None:
                await give_back(msg, self._log, "arrived as another queue's task was taken")
            # A request may still wait at the server: withdraw it.
            await self._pullers[i].close()
            self._open.discard(i)
        if error is not None and got is None:
            raise error
        return got

    async def close(self) -> None:
        for i in list(self._open):
            await self._pullers[i].close()
        self._open.clear()
