"""Long pull requests (poller/pull.py) against a real nats-server: quiet when idle, and
nothing handed over around a stop or a lost request waits for ack_wait."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from poller.logs import Logger
from poller.pull import Puller, PullError
from tests.support.natsserver import NatsServer
from tests.support.poller_harness import publish_task, run, running_poller, setup_bus

pytestmark = pytest.mark.integration

NEXT = "$JS.API.CONSUMER.MSG.NEXT.AF_TASKS.worker-w1"
ACK_WAIT = 30  # long: a task that comes back within a test came back by a nak


async def _requests_seen(nc: Any) -> list[float]:
    """Times at which anybody asked w1's consumer for a task."""
    seen: list[float] = []

    async def record(_msg: Any) -> None:
        seen.append(time.monotonic())

    await nc.subscribe(NEXT, cb=record)
    await nc.flush()
    return seen


async def _take(js: Any, timeout: float = 2) -> Any:
    """What a fresh pull gets now (None: nothing within `timeout`)."""
    psub = await js.pull_subscribe_bind("worker-w1", "AF_TASKS")
    try:
        [msg] = await psub.fetch(1, timeout=timeout)
    except nats.errors.TimeoutError:
        return None
    finally:
        await psub.unsubscribe()
    await msg.ack()
    return msg


def test_an_idle_poller_asks_once_and_sigterm_ends_its_wait_at_once(
    server: NatsServer, work: Path
) -> None:
    async def go() -> None:
        watcher = await nats.connect(server.url)
        seen = await _requests_seen(watcher)
        async with running_poller(server.url, work, ack_wait=ACK_WAIT) as bus:
            js, poller = bus.js, bus.poller
            await asyncio.sleep(4)  # connects, binds, asks: then waits at the server
            assert len(seen) == 1, f"{len(seen)} pull requests in 4 s of idling"
            t0 = time.monotonic()
            poller.signal(signal.SIGTERM)
            assert poller.wait(10) == 0
            assert time.monotonic() - t0 < 2  # did not sit out its 30 s request
            # Its request left with it: the next task waits for the next pull, undelivered.
            await publish_task(js, "w1", {"task_id": "after", "instructions": "x"})
            msg = await _take(js)
            assert msg is not None and msg.metadata.num_delivered == 1
        await watcher.close()

    run(go())


async def _puller(url: str, log: Logger | None = None) -> tuple[Any, Any, Puller]:
    await setup_bus(url, "w1", ack_wait=ACK_WAIT)
    nc = await nats.connect(url, inbox_prefix="_INBOX_w1")
    puller = Puller(nc, "AF_TASKS", "worker-w1", log)
    await puller.start()
    return nc, nc.jetstream(), puller


async def _asked(puller: Puller) -> None:
    """Let `puller` send a request and leave it waiting at the server."""
    stop = asyncio.Event()
    waiting = asyncio.ensure_future(puller.next(stop))
    await asyncio.sleep(0.3)
    stop.set()
    assert await waiting is None


def test_a_task_handed_over_as_the_puller_closes_is_given_back_at_once(
    server: NatsServer,
) -> None:
    logged = io.StringIO()

    async def go() -> None:
        nc, js, puller = await _puller(server.url, Logger(stream=logged))
        await _asked(puller)
        await publish_task(js, "w1", {"task_id": "in-flight", "instructions": "x"})
        await asyncio.sleep(0.3)  # delivered to the puller, which nobody asks for it now
        await puller.close()
        msg = await _take(js)
        assert msg is not None, "the task waits for ack_wait"
        assert msg.metadata.num_delivered == 2  # handed over once, given back, taken again
        await nc.close()

    run(go())
    # Said, with its task id: its next delivery is its second, though it never ran.
    events = [json.loads(line) for line in logged.getvalue().splitlines()]
    assert [(e["event"], e["task_id"]) for e in events] == [("task_given_back_unrun", "in-flight")]


def test_a_task_nobody_asked_for_is_given_back_and_the_asked_one_returned(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poller import pull

    # Given up for lost long before the server's first heartbeat: asked again on the same
    # inbox while the first request still waits.
    monkeypatch.setattr(pull, "LOST_AFTER", 0.5)

    async def go() -> None:
        nc, js, puller = await _puller(server.url)
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(puller.next(stop))
        await asyncio.sleep(0.8)
        assert puller.requests == 2  # two requests wait at the server now
        for n in (1, 2):
            await publish_task(js, "w1", {"task_id": f"t{n}", "instructions": "x"})
        got = await asyncio.wait_for(waiting, 5)
        assert got is not None and got.metadata.num_delivered == 1
        await got.ack()
        await asyncio.sleep(0.3)
        other = await _take(js)  # the second answer was nak'd, not kept
        assert other is not None and other.metadata.num_delivered == 2
        assert {got.data, other.data} == {
            b'{"task_id": "t1", "instructions": "x"}',
            b'{"task_id": "t2", "instructions": "x"}',
        }
        await puller.close()
        await nc.close()

    run(go())


def test_asking_again_after_a_reconnect_withdraws_the_request_from_before(
    server: NatsServer,
) -> None:
    """A request from before a reconnect (or sent while disconnected, and so sent on
    reconnecting) would take a task nobody asked for, which is then nak'd: its delivery
    count spent for nothing. Asking again on a new inbox leaves it without interest."""

    async def go() -> None:
        nc, js, puller = await _puller(server.url)
        await _asked(puller)
        await puller.ask_again()  # as after a reconnect: the first request may still be alive
        await _asked(puller)
        assert puller.requests == 2
        for n in (1, 2):
            await publish_task(js, "w1", {"task_id": f"t{n}", "instructions": "x"})
        got = await puller.next(asyncio.Event())
        assert got is not None and got.metadata.num_delivered == 1
        await got.ack()
        await asyncio.sleep(0.3)
        other = await _take(js)  # never delivered to the withdrawn request
        assert other is not None and other.metadata.num_delivered == 1
        assert puller.dropped == 0
        await puller.close()
        await nc.close()

    run(go())


def test_a_deleted_consumer_ends_the_wait_with_an_error(server: NatsServer) -> None:
    async def go() -> None:
        nc, js, puller = await _puller(server.url)
        waiting = asyncio.ensure_future(puller.next(asyncio.Event()))
        await asyncio.sleep(0.3)
        await js.delete_consumer("AF_TASKS", "worker-w1")
        with pytest.raises(PullError, match="409"):
            await asyncio.wait_for(waiting, 5)
        await puller.close()
        await nc.close()

    run(go())


def test_a_waiting_request_the_server_still_holds_is_not_asked_again(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's idle heartbeats say the request waits: no second request, however long
    it waits. A request nobody hears of for LOST_AFTER (its heartbeats gone, as when the
    worker's broker lost its routes to the consumer's leader) is asked again."""
    from poller import pull

    monkeypatch.setattr(pull, "HEARTBEAT", 0.5)
    monkeypatch.setattr(pull, "LOST_AFTER", 1.6)

    async def go() -> None:
        nc, js, puller = await _puller(server.url)
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(puller.next(stop))
        await asyncio.sleep(3.5)  # twice LOST_AFTER: the heartbeats kept it alive
        assert puller.requests == 1
        await publish_task(js, "w1", {"task_id": "t1", "instructions": "x"})
        got = await asyncio.wait_for(waiting, 5)
        assert got is not None and got.metadata.num_delivered == 1
        await got.ack()
        # Now the heartbeats of the next request never arrive (withdrawn behind its back).
        monkeypatch.setattr(puller, "_sort", lambda msg: asyncio.sleep(0))
        waiting = asyncio.ensure_future(puller.next(stop))
        await asyncio.sleep(2.5)
        assert puller.requests == 3  # the second, unheard of, then asked again
        stop.set()
        assert await waiting is None
        await puller.close()
        await nc.close()

    run(go())
