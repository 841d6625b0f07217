"""Delivery guarantees through a real poller: long tasks, duplicates, poison, failures, sizes."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    Poller,
    directive,
    publish_task,
    results,
    run,
    running_poller,
    standin_records,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration


@asynccontextmanager
async def bus(
    server: NatsServer, work: Path, ack_wait: int = 2, max_deliver: int = 3, **env: str
) -> AsyncIterator[tuple[Any, Poller]]:
    async with running_poller(
        server.url, work, ack_wait=ack_wait, max_deliver=max_deliver, env=env
    ) as b:
        yield b.js, b.poller


async def n_results(js: Any, n: int, timeout: float = 15) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(await results(js)) >= n

    assert await wait_until(enough, timeout), f"fewer than {n} results"
    return await results(js)


async def tasks_left(js: Any) -> int:
    info = await js.stream_info("AF_TASKS")
    return int(info.state.messages)


def test_long_task_runs_once_with_short_ack_wait(server: NatsServer, work: Path) -> None:
    """ack_wait 2 s, a 6 s task: in_progress keeps it from being delivered again."""

    async def go() -> None:
        async with bus(server, work, ack_wait=2) as (js, poller):
            await publish_task(js, "w1", {"task_id": "long", "instructions": directive(sleep=6)})
            assert await wait_until(lambda: bool(standin_records(work, "start")), 10)
            # a second puller on the same consumer would get the task if it were redelivered
            spy = await js.pull_subscribe_bind("worker-w1", "AF_TASKS")
            with pytest.raises(nats.errors.TimeoutError):
                await spy.fetch(1, timeout=5)
            [r] = await n_results(js, 1, 20)
            assert r["status"] == "completed" and r["attempt"] == 1
            assert r["duration_s"] >= 6
            assert len(standin_records(work, "start")) == 1
            assert not poller.logged("redelivered_while_running")
            assert await wait_until(lambda: _zero(js), 5)

    run(go())


async def _zero(js: Any) -> bool:
    return await tasks_left(js) == 0


def test_same_task_published_twice_runs_once(server: NatsServer, work: Path) -> None:
    """The publisher sets Nats-Msg-Id = task_id: the task stream drops the second copy."""

    async def go() -> None:
        async with bus(server, work) as (js, _):
            task = {"task_id": "dup", "instructions": "hello"}
            a = await publish_task(js, "w1", task, msg_id="dup")
            b = await publish_task(js, "w1", task, msg_id="dup")
            assert not a.duplicate and b.duplicate
            await n_results(js, 1)
            await publish_task(js, "w1", {"task_id": "after", "instructions": "x"})
            rs = await n_results(js, 2)
            assert sorted(r["task_id"] for r in rs) == ["after", "dup"]
            assert len(standin_records(work, "start")) == 2

    run(go())


def test_redelivered_task_with_stored_result_is_not_rerun(server: NatsServer, work: Path) -> None:
    """A result already stored (e.g. the poller died before its ack): ack, do not run again."""

    async def go() -> None:
        async with bus(server, work) as (js, poller):
            await publish_task(js, "w1", {"task_id": "t1", "instructions": "first"})
            await n_results(js, 1)
            # the same task id again, outside any dedupe window (no Msg-Id): already done
            await publish_task(js, "w1", {"task_id": "t1", "instructions": "first"})
            assert await wait_until(lambda: bool(poller.logged("already_done")), 10)
            assert len(await results(js)) == 1
            assert len(standin_records(work, "start")) == 1
            assert await wait_until(lambda: _zero(js), 5)

    run(go())


def test_result_of_another_worker_does_not_count(server: NatsServer, work: Path) -> None:
    """Another worker's result for the same task id (on its own subject, with the Msg-Id
    the old scheme used) neither counts as ours nor stops ours from being stored."""

    async def go() -> None:
        async with bus(server, work) as (js, _):
            other = json.dumps({"task_id": "t2", "worker_id": "w1", "status": "completed"})
            await js.publish("af.result.w9.t2", other.encode(), headers={"Nats-Msg-Id": "t2:w1"})
            await publish_task(js, "w1", {"task_id": "t2", "instructions": "mine too"})
            await n_results(js, 2)
            subjects = [s for s, _, _ in await stream_messages(js, "AF_RESULTS")]
            assert subjects == ["af.result.w9.t2", "af.result.w1.t2"]
            assert len(standin_records(work, "start")) == 1

    run(go())


def test_failed_and_timed_out_cli_are_acked_with_results(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with bus(server, work) as (js, _):
            await publish_task(
                js, "w1", {"task_id": "bad", "instructions": directive(exit=3, err="boom")}
            )
            await publish_task(
                js, "w1", {"task_id": "slow", "instructions": directive(sleep=30), "timeout": 1}
            )
            rs = {r["task_id"]: r for r in await n_results(js, 2, 20)}
            assert rs["bad"]["status"] == "failed" and rs["bad"]["exit_code"] == 3
            assert rs["bad"]["stderr_tail"] == "boom"
            assert rs["slow"]["status"] == "timeout" and rs["slow"]["duration_s"] < 3
            assert await wait_until(lambda: _zero(js), 5)
            assert len(standin_records(work, "start")) == 2

    run(go())


def test_cli_that_cannot_start_is_retried_then_dead_lettered(
    server: NatsServer, work: Path
) -> None:
    async def go() -> None:
        argv = json.dumps([str(work / "no-such-cli")])
        async with bus(server, work, max_deliver=2, COMMAND_ARGV=argv) as (js, poller):
            await publish_task(js, "w1", {"task_id": "nocli", "instructions": "x"})

            async def dead() -> bool:
                return len(await stream_messages(js, "AF_DEAD")) == 1

            assert await wait_until(dead, 15)
            [(subject, rec, _)] = await stream_messages(js, "AF_DEAD")
            assert subject == "af.dead.w1"
            assert rec["task_id"] == "nocli" and rec["attempt"] == 2
            assert "cannot start" in rec["reason"]
            assert json.loads(base64.b64decode(rec["task_b64"]))["task_id"] == "nocli"
            assert len(poller.logged("task_retry")) == 1
            assert await results(js) == []
            assert await wait_until(lambda: _zero(js), 5)  # termed, gone from the work queue

    run(go())


POISON: list[tuple[str, bytes, str | None]] = [
    ("not json", b"{nope", None),
    ("array", b'[{"task_id": "x", "instructions": "y"}]', None),
    ("no id", b'{"instructions": "y"}', None),
    ("id not string", b'{"task_id": 5, "instructions": "y"}', None),
    ("dotted id", b'{"task_id": "a.b", "instructions": "y"}', None),
    ("star id", b'{"task_id": "*", "instructions": "y"}', None),
    ("gt id", b'{"task_id": ">", "instructions": "y"}', None),
    ("space id", b'{"task_id": "a b", "instructions": "y"}', None),
    ("no instructions", b'{"task_id": "p1"}', "p1"),
    ("wrong type", b'{"task_id": "p2", "instructions": "y", "timeout": "soon"}', "p2"),
    ("bad metadata", b'{"task_id": "p3", "instructions": "y", "metadata": [1]}', "p3"),
    ("too large", b'{"task_id": "p4", "instructions": "' + b"z" * 5000 + b'"}', "p4"),
]


def test_poison_inputs_are_rejected_and_dead_lettered(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with bus(server, work, MAX_TASK_BYTES="4096") as (js, poller):
            nc = js._nc
            seen: list[str] = []

            async def spy(msg: Any) -> None:
                seen.append(msg.subject)

            await nc.subscribe(">", cb=spy)
            for _, data, _ in POISON:
                await publish_task(js, "w1", data)

            async def all_dead() -> bool:
                return len(await stream_messages(js, "AF_DEAD")) == len(POISON)

            assert await wait_until(all_dead, 20)
            dead = [rec for _, rec, _ in await stream_messages(js, "AF_DEAD")]
            for (name, data, tid), rec in zip(POISON, dead, strict=True):
                assert rec["task_id"] == tid, name
                assert base64.b64decode(rec["task_b64"]) == data, name
            rs = {r["task_id"]: r for r in await results(js)}
            assert set(rs) == {"p1", "p2", "p3", "p4"}
            assert all(r["status"] == "rejected" and r["error"] for r in rs.values())
            assert standin_records(work) == []  # no CLI ran
            assert await wait_until(lambda: _zero(js), 5)
            await nc.flush()
            published = {s for s in seen if not s.startswith(("$JS", "_INBOX"))}
            allowed = {"af.worker.w1.inbox", "af.worker.w1.status", "af.dead.w1"}
            allowed |= {f"af.result.w1.{t}" for t in ("p1", "p2", "p3", "p4")}
            assert published <= allowed, published - allowed
            assert len(poller.logged("task_rejected")) == len(POISON)

    run(go())


DEEP = b"[" * 1000 + b"]" * 1000
UNDECODABLE: list[tuple[str, bytes, str | None]] = [
    ("deep array", DEEP, None),
    ("deep payload", b'{"task_id": "deep1", "instructions": "y", "payload": ' + DEEP + b"}", None),
    (
        "payload past the limit",
        b'{"task_id": "deep2", "instructions": "y", "payload": ' + DEEP[:150] + DEEP[-150:] + b"}",
        "deep2",
    ),
    (
        "integer of 5000 digits",
        b'{"task_id": "n1", "instructions": "y", "timeout": ' + b"9" * 5000 + b"}",
        None,
    ),
    # `^...$` took "nl1\n" for a token: three deliveries failed on BadSubjectError.
    ("id with a trailing newline", b'{"task_id": "nl1\\n", "instructions": "y"}', None),
]


def test_undecodable_tasks_are_dead_lettered_on_their_first_delivery(
    server: NatsServer, work: Path
) -> None:
    """About 1,000 levels of nesting made the decoder raise RecursionError: the task was
    naked and redelivered until max_deliver, never dead-lettered, and stayed in the stream."""

    async def go() -> None:
        async with bus(server, work, max_deliver=3) as (js, poller):
            for _, data, _ in UNDECODABLE:
                await publish_task(js, "w1", data)

            async def all_dead() -> bool:
                return len(await stream_messages(js, "AF_DEAD")) == len(UNDECODABLE)

            assert await wait_until(all_dead, 15)
            dead = [rec for _, rec, _ in await stream_messages(js, "AF_DEAD")]
            for (name, data, tid), rec in zip(UNDECODABLE, dead, strict=True):
                assert (rec["task_id"], rec["attempt"]) == (tid, 1), name
                assert base64.b64decode(rec["task_b64"]) == data, name
            assert [r["task_id"] for r in await results(js)] == ["deep2"]
            assert await wait_until(lambda: _zero(js), 5)
            assert poller.logged("task_error") == [] and poller.logged("task_retry") == []
            assert len(poller.logged("task_rejected")) == len(UNDECODABLE)
            assert standin_records(work) == []

    run(go())


def test_big_prompt_and_huge_output(server: NatsServer, work: Path) -> None:
    """A 200 KB prompt arrives intact on stdin; 5 MB of output is cut at the cap and flagged."""

    async def go() -> None:
        async with bus(server, work, OUTPUT_CAP="65536") as (js, _):
            big = directive(print="ok") + "\n" + "p" * 200_000
            await publish_task(js, "w1", {"task_id": "bigin", "instructions": big})
            await publish_task(
                js, "w1", {"task_id": "bigout", "instructions": directive(out_bytes=5_000_000)}
            )
            rs = {r["task_id"]: r for r in await n_results(js, 2, 20)}
            rec = {r["task_id"]: r for r in standin_records(work, "end")}
            assert rec["bigin"]["stdin_bytes"] == len(big.encode())
            assert rs["bigin"]["output"] == "ok" and not rs["bigin"]["output_truncated"]
            out = rs["bigout"]
            assert out["status"] == "completed"
            assert out["output_truncated"] is True
            assert out["output_bytes"] == 5_000_000
            assert len(out["output"]) == 65536

    run(go())


def test_concurrency_runs_tasks_side_by_side(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with running_poller(server.url, work, concurrency=3, env={"CONCURRENCY": "3"}) as b:
            js = b.js
            for i in range(3):
                await publish_task(
                    js, "w1", {"task_id": f"c{i}", "instructions": directive(sleep=2)}
                )
            rs = await n_results(js, 3, 15)
            starts = sorted(r["started_at"] for r in rs)
            ends = sorted(r["ended_at"] for r in rs)
            assert starts[-1] < ends[0]  # all three were running at the same time
            assert len(standin_records(work, "start")) == 3

    run(go())


def test_a_rejected_id_can_be_sent_again_correctly(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with bus(server, work) as (js, _):
            await publish_task(js, "w1", {"task_id": "fixme", "instructions": ""})
            [r] = await n_results(js, 1)
            assert r["status"] == "rejected"
            await publish_task(js, "w1", {"task_id": "fixme", "instructions": "now right"})
            assert await wait_until(lambda: len(standin_records(work, "end")) == 1, 10)

            async def replaced() -> bool:
                return [r["status"] for r in await results(js)] == ["completed"]

            # one result per (worker, task) subject: the run replaced the rejection
            assert await wait_until(replaced, 10)
            assert len(standin_records(work, "start")) == 1

    run(go())
