"""The poller's drain, with real poller processes on a real nats-server (docs/poller.md,
"Stopping: drain and hand-back"): SIGTERM lets running tasks finish, each once, nothing
killed; past DRAIN_TIMEOUT, or when asked with SIGUSR1 or a second SIGTERM, running tasks
are handed back at once and another poller runs them, once, without waiting for ack_wait."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

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
    standin_records,
    started,
    wait_until,
)

pytestmark = pytest.mark.integration


async def _beats(nc: Any) -> list[dict[str, Any]]:
    beats: list[dict[str, Any]] = []

    async def on_beat(msg: Any) -> None:
        beats.append(json.loads(msg.data))

    await nc.subscribe("af.worker.w1.status", cb=on_beat)
    return beats


def test_sigterm_lets_every_running_task_finish_once_and_kills_nothing(
    server: NatsServer, work: Path
) -> None:
    async def go() -> None:
        env = {"DRAIN_TIMEOUT": "30", "CONCURRENCY": "2"}
        async with running_poller(server.url, work, concurrency=2, env=env) as bus:
            js, poller = bus.js, bus.poller
            beats = await _beats(bus.nc)
            for task_id in ("d1", "d2"):
                task = {"task_id": task_id, "instructions": directive(sleep=3)}
                await publish_task(js, "w1", task)
            await started(work, 2)
            await publish_task(js, "w1", {"task_id": "d3", "instructions": "queued"})
            t0 = time.time()
            poller.signal(signal.SIGTERM)
            assert await wait_until(lambda: any(b["draining"] for b in beats), 5)
            draining = next(b for b in beats if b["draining"])
            assert draining["state"] == "stopping"
            assert 29 < draining["drain_until"] - t0 < 31
            assert sorted(t["task_id"] for t in draining["in_flight"]) == ["d1", "d2"]
            assert all(t["started"] <= t0 for t in draining["in_flight"])
            assert poller.wait(20) == 0
            done = await results(js)
            assert sorted((r["task_id"], r["status"], r["attempt"]) for r in done) == [
                ("d1", "completed", 1),
                ("d2", "completed", 1),
            ]
            assert len(standin_records(work, "end")) == 2  # both ran to their end: none killed
            assert not poller.logged("task_handed_back")
            info = await js.consumer_info("AF_TASKS", "worker-w1")
            assert (info.num_pending, info.num_ack_pending) == (1, 0)  # d3: never delivered

    run(go())


def test_past_the_drain_timeout_a_task_is_handed_back_and_runs_once_elsewhere_at_once(
    server: NatsServer, tmp_path: Path
) -> None:
    """Two pollers of one worker (as on two hosts); ack_wait 30 s, so only a hand-back can
    bring the task to the second one within seconds."""
    log = tmp_path / "standin.jsonl"  # shared: the second run of the task knows it is one

    def poller(name: str) -> Poller:
        work = tmp_path / name
        work.mkdir(parents=True)
        env = poller_env(server.url, "w1", work, DRAIN_TIMEOUT="1", STANDIN_LOG=str(log))
        return Poller(env, work / "poller.log")

    async def go() -> None:
        (tmp_path / "a").mkdir(parents=True)
        env = {"DRAIN_TIMEOUT": "1", "STANDIN_LOG": str(log)}
        async with running_poller(server.url, tmp_path / "a", ack_wait=30, env=env) as bus:
            js, first = bus.js, bus.poller
            task = {"task_id": "h1", "instructions": directive(sleep_first_run=60)}
            await publish_task(js, "w1", task)
            [a] = await started(tmp_path, 1)
            other = poller("b").start()
            try:
                assert await wait_until(lambda: bool(other.logged("consumer_bound")), 10)
                t0 = time.monotonic()
                first.signal(signal.SIGTERM)
                assert first.wait(10) == 0
                stopped = time.monotonic() - t0
                assert 1 <= stopped < 5, stopped  # the drain's 1 s, then handed back
                assert not alive(a["pid"])
                [handed] = first.logged("task_handed_back")
                assert handed["task_id"] == "h1" and not handed["dead_letter"]

                async def one() -> bool:
                    return len(await results(js)) == 1

                assert await wait_until(one, 10)
                [b] = standin_records(tmp_path, "start")[1:]
                assert b["cwd"] == str(tmp_path / "b" / "worktrees" / "h1")  # the other poller
                assert b["at"] - a["at"] < 8  # at once, not after the 30 s ack wait
                [r] = await results(js)
                assert (r["status"], r["attempt"]) == ("completed", 2)
                await asyncio.sleep(1)
                assert len(await results(js)) == 1
                assert len(standin_records(tmp_path, "end")) == 1
            finally:
                other.stop()

    run(go())


@pytest.mark.parametrize("then", [signal.SIGUSR1, signal.SIGTERM])
def test_sigusr1_or_a_second_sigterm_hands_back_at_once(
    server: NatsServer, work: Path, then: signal.Signals
) -> None:
    """What `apply --no-drain` and an expired `--drain-timeout` use."""

    async def go() -> None:
        env = {"DRAIN_TIMEOUT": "600"}
        async with running_poller(server.url, work, ack_wait=30, env=env) as bus:
            js, poller = bus.js, bus.poller
            beats = await _beats(bus.nc)
            await publish_task(js, "w1", {"task_id": "u1", "instructions": directive(sleep=60)})
            [a] = await started(work, 1)
            poller.signal(signal.SIGTERM)
            assert await wait_until(lambda: any(b["draining"] for b in beats), 5)
            t0 = time.monotonic()
            poller.signal(then)
            assert poller.wait(10) == 0
            assert time.monotonic() - t0 < 5
            assert not alive(a["pid"])
            assert poller.logged("task_handed_back")
            assert await results(js) == []
            # Back in the queue at once, not after the 30 s ack wait.
            psub = await js.pull_subscribe_bind("worker-w1", "AF_TASKS")
            [msg] = await psub.fetch(1, timeout=3)
            assert json.loads(msg.data)["task_id"] == "u1"
            assert msg.metadata.num_delivered == 2

    run(go())
