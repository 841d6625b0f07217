"""Crashes, stops, server restarts, shutdown, heartbeat and ping, with a real poller process."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    Poller,
    alive,
    directive,
    poller_env,
    publish_task,
    results,
    run,
    running_poller,
    setup_bus,
    standin_records,
    started,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_sigkill_mid_task_then_restart_runs_it_once(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with running_poller(server.url, work) as bus:
            js, poller = bus.js, bus.poller
            await publish_task(js, "w1", {"task_id": "k1", "instructions": directive(sleep=3)})
            [first] = await started(work, 1)
            poller.signal(signal.SIGKILL)
            poller.wait(5)
            assert alive(first["pid"])  # the orphaned CLI is still running...
            poller.start()
            # ...until the restarted poller kills what its predecessor left behind
            assert await wait_until(lambda: not alive(first["pid"]), 5)

            async def one() -> bool:
                return len(await results(js)) == 1

            assert await wait_until(one, 20)
            await asyncio.sleep(1)  # nothing else shows up
            [r] = await results(js)
            # The second delivery finds the lease of the poller that died on this machine, in
            # this state dir: taken over at once, not waited out.
            assert r["status"] == "completed" and r["attempt"] == 2
            assert len(poller.logged("lease_taken_over")) == 1
            assert len(standin_records(work, "end")) == 1  # the first run never finished
            assert poller.logged("killed_orphans")

    run(go())


def test_sigstop_mid_task_is_delivered_again(server: NatsServer, work: Path) -> None:
    """A frozen poller stops signalling progress: the task comes back after one ack wait."""

    async def go() -> None:
        async with running_poller(server.url, work) as bus:
            js, poller = bus.js, bus.poller
            await publish_task(js, "w1", {"task_id": "s1", "instructions": directive(sleep=10)})
            await started(work, 1)
            await asyncio.sleep(2.5)  # longer than ack_wait: in_progress kept it ours
            poller.signal(signal.SIGSTOP)
            t0 = time.monotonic()
            psub = await js.pull_subscribe_bind("worker-w1", "AF_TASKS")
            [msg] = await psub.fetch(1, timeout=6)
            waited = time.monotonic() - t0
            assert json.loads(msg.data)["task_id"] == "s1"
            assert msg.metadata.num_delivered == 2
            assert waited < 4.5, waited

    run(go())


def test_server_restart_while_idle_and_while_running(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        await setup_bus(server.url, "w1", ack_wait=2)
        poller = Poller(poller_env(server.url, "w1", work), work / "poller.log").start()
        try:
            assert await wait_until(lambda: bool(poller.logged("consumer_bound")), 10)
            server.restart()  # idle
            await asyncio.sleep(0.5)
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await publish_task(js, "w1", {"task_id": "r1", "instructions": "after restart"})

            async def count(n: int) -> bool:
                return len(await results(js)) == n

            assert await wait_until(lambda: count(1), 15), poller.events()[-5:]
            await publish_task(js, "w1", {"task_id": "r2", "instructions": directive(sleep=4)})
            await started(work, 2)
            await nc.close()
            server.restart()  # while the task runs
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            assert await wait_until(lambda: count(2), 20), poller.events()[-5:]
            await asyncio.sleep(2.5)  # longer than ack_wait: no second delivery shows up
            rs = await results(js)
            assert [r["task_id"] for r in rs] == ["r1", "r2"]
            assert rs[1]["attempt"] == 1, "\n".join(json.dumps(e) for e in poller.events())
            assert len(standin_records(work, "start")) == 2
            info = await js.stream_info("AF_TASKS")
            assert info.state.messages == 0
            await nc.close()
        finally:
            poller.stop()

    run(go())


def test_sigterm_lets_the_task_finish_then_exits_0(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with running_poller(server.url, work) as bus:
            js, poller = bus.js, bus.poller
            await publish_task(js, "w1", {"task_id": "g1", "instructions": directive(sleep=2)})
            await publish_task(js, "w1", {"task_id": "g2", "instructions": "queued"})
            await started(work, 1)
            poller.signal(signal.SIGTERM)
            assert poller.wait(10) == 0
            [r] = await results(js)
            assert r["task_id"] == "g1" and r["status"] == "completed"
            info = await js.stream_info("AF_TASKS")
            assert info.state.messages == 1  # g2 was not started and is still there

    run(go())


def test_sigterm_past_grace_naks_and_the_next_poller_runs_it(
    server: NatsServer, work: Path
) -> None:
    async def go() -> None:
        # a nak, not the 30 s ack wait, returns the task
        async with running_poller(
            server.url, work, ack_wait=30, env={"DRAIN_TIMEOUT": "0.5"}
        ) as bus:
            js, poller = bus.js, bus.poller
            task = {"task_id": "n1", "instructions": directive(sleep_first_run=60)}
            await publish_task(js, "w1", task)
            [first] = await started(work, 1)
            t0 = time.monotonic()
            poller.signal(signal.SIGTERM)
            assert poller.wait(10) == 0
            assert time.monotonic() - t0 < 4
            assert not alive(first["pid"])
            assert poller.logged("task_handed_back")
            # the next poller gets it back at once (nak), not after the 30 s ack wait
            poller.start()

            async def one() -> bool:
                return len(await results(js)) == 1

            assert await wait_until(one, 10)
            [r] = await results(js)
            assert r["status"] == "completed" and r["attempt"] == 2

    run(go())


def test_heartbeat_and_ping(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with running_poller(server.url, work) as bus:
            nc, js = bus.nc, bus.js
            beats: list[dict[str, Any]] = []

            async def on_beat(msg: Any) -> None:
                beats.append(json.loads(msg.data))

            await nc.subscribe("af.worker.w1.status", cb=on_beat)
            assert await wait_until(lambda: any(b["status"] == "idle" for b in beats), 5)
            await publish_task(js, "w1", {"task_id": "h1", "instructions": directive(sleep=2)})
            assert await wait_until(lambda: any(b["status"] == "busy" for b in beats), 5)
            busy = next(b for b in beats if b["status"] == "busy")
            assert busy["current_tasks"][0]["task_id"] == "h1"
            reply = await nc.request("af.worker.w1.ping", b"", timeout=2)
            pong = json.loads(reply.data)
            assert pong["worker_id"] == "w1" and pong["poller_version"]
            assert pong["uptime_s"] > 0
            assert await wait_until(lambda: beats[-1]["counts"].get("completed") == 1, 8)

    run(go())


def test_sigterm_while_the_server_is_unreachable(work: Path) -> None:
    from tests.support.natsserver import free_port

    env = poller_env(f"nats://127.0.0.1:{free_port()}", "w1", work)
    poller = Poller(env, work / "poller.log").start()
    try:
        time.sleep(1.5)
        assert poller.logged("nats_error") or poller.logged("nats_connect_failed")
        t0 = time.monotonic()
        poller.signal(signal.SIGTERM)
        assert poller.wait(5) == 0
        assert time.monotonic() - t0 < 2
        assert poller.logged("stopped")
    finally:
        poller.stop()
