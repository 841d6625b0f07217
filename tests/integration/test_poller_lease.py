"""A task never runs twice at the same time: task leases and orphan cleanup, with real pollers.

A poller frozen (SIGSTOP) past the ack wait loses its delivery to a second instance of the same
worker, on the same host (same state dir) or another (its own state dir): the second must
neither kill the first one's running CLI nor run the task while the first still holds its
lease. The lease of a poller that died expires, and the task then runs once more.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from fleetctl.identity import natsaccess as na
from poller.lease import Held, Lease
from tests.support.natsserver import NatsServer
from tests.support.nscfleet import (
    DENIED_TIMEOUT,
    connect,
    create_resources,
    fleet_server,
    make_fleet,
)
from tests.support.poller_harness import (
    ANOTHER_MACHINE,
    Poller,
    alive,
    directive,
    poller_env,
    publish_task,
    results,
    run,
    setup_bus,
    standin_records,
    wait_until,
    worker_leases,
)

pytestmark = pytest.mark.integration

ACK_WAIT = 2
FREEZE = 3.5  # past the ack wait: the frozen poller's task is delivered again
LEASE_TTL = 8  # outlives the freeze, so the frozen poller keeps its task


@asynccontextmanager
async def bus(server: NatsServer, concurrency: int = 1) -> AsyncIterator[Any]:
    await setup_bus(server.url, "w1", ack_wait=ACK_WAIT, max_deliver=5, concurrency=concurrency)
    nc = await nats.connect(server.url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


def instance(
    server: NatsServer, work: Path, base: Path, name: str, lease_ttl: int = LEASE_TTL, **env: str
) -> Poller:
    """A poller of worker w1 with its state under `base` (another base: another host). Every
    instance's CLI logs to `work`, so the runs of all of them are counted together."""
    base.mkdir(exist_ok=True)
    settings = poller_env(server.url, "w1", base, **env)
    settings.update(STANDIN_LOG=str(work / "standin.jsonl"), LEASE_TTL=str(lease_ttl))
    return Poller(settings, work / f"{name}.log")


async def bound(*pollers: Poller) -> None:
    for p in pollers:
        assert await wait_until(lambda p=p: bool(p.logged("consumer_bound")), 10), p.events()


async def tasks_left(js: Any) -> int:
    return int((await js.stream_info("AF_TASKS")).state.messages)


async def one_result(js: Any) -> dict[str, Any]:
    async def stored() -> bool:
        return len(await results(js)) == 1

    assert await wait_until(stored, 20)
    [r] = await results(js)
    return r


async def frozen_while_another_instance_starts(server: NatsServer, work: Path, base: Path) -> None:
    """The first poller runs a 6 s task and is frozen for 3.5 s (past the 2 s ack wait); a
    second instance starts meanwhile and is handed the task again."""
    async with bus(server) as js:
        first = instance(server, work, work, "first").start()
        second = instance(server, work, base, "second")
        try:
            await bound(first)
            await publish_task(js, "w1", {"task_id": "f1", "instructions": directive(sleep=6)})
            assert await wait_until(lambda: bool(standin_records(work, "start")), 10)
            [started] = standin_records(work, "start")
            first.signal(signal.SIGSTOP)
            second.start()
            await bound(second)
            await asyncio.sleep(FREEZE)  # the task comes back to the second instance
            assert len(standin_records(work, "start")) == 1  # which does not run it
            assert alive(started["pid"])  # nor take the running CLI for an orphan
            first.signal(signal.SIGCONT)
            r = await one_result(js)
            assert r["status"] == "completed" and r["exit_code"] == 0 and r["attempt"] == 1
            assert await wait_until(lambda: _zero(js), 5)
            await asyncio.sleep(ACK_WAIT + 0.5)  # nothing runs again, no second result
            assert [s["pid"] for s in standin_records(work, "start")] == [started["pid"]]
            assert [e["pid"] for e in standin_records(work, "end")] == [started["pid"]]
            assert len(await results(js)) == 1
            assert second.logged("task_leased_elsewhere")  # it was handed the task
            assert not second.logged("killed_orphans")
            assert not first.logged("lease_lost")
        finally:
            first.stop()
            second.stop()


async def _zero(js: Any) -> bool:
    return await tasks_left(js) == 0


def test_frozen_poller_and_a_second_instance_on_the_same_host(
    server: NatsServer, work: Path
) -> None:
    """Same state dir: the second instance leaves the first one's running CLI alone (its
    poller is alive) and does not run the task while the first holds the lease."""
    run(frozen_while_another_instance_starts(server, work, work))


def test_frozen_poller_and_a_second_instance_on_another_host(
    server: NatsServer, work: Path, tmp_path: Path
) -> None:
    """Another state and work dir, the same worker credentials: the task is not run there
    while the frozen poller still holds its lease."""
    run(frozen_while_another_instance_starts(server, work, tmp_path / "host-b"))


def test_same_task_id_delivered_twice_at_concurrency_3_runs_once(
    server: NatsServer, work: Path
) -> None:
    """No Msg-Id: both copies are stored and delivered at once; the second joins the first."""

    async def go() -> None:
        async with bus(server, concurrency=3) as js:
            poller = instance(server, work, work, "poller", CONCURRENCY="3").start()
            try:
                await bound(poller)
                task = {"task_id": "d1", "instructions": directive(sleep=3)}
                await publish_task(js, "w1", task)
                assert await wait_until(lambda: bool(standin_records(work, "start")), 10)
                await publish_task(js, "w1", task)
                assert await wait_until(lambda: bool(poller.logged("same_task_running")), 5)
                r = await one_result(js)
                assert r["status"] == "completed" and r["attempt"] == 1
                # both copies settled with the one run, not left to come back later
                assert await wait_until(lambda: _zero(js), 1)
                await asyncio.sleep(ACK_WAIT + 0.5)
                assert len(standin_records(work, "start")) == 1
                assert len(await results(js)) == 1
            finally:
                poller.stop()

    run(go())


def test_holder_killed_mid_task_then_the_lease_expires_and_it_runs_once(
    server: NatsServer, work: Path, tmp_path: Path
) -> None:
    """Two hosts (the second in a pid namespace of its own). The one running the task is
    SIGKILLed with its CLI (what systemd does to the unit's control group); the other cannot
    tell that it died, waits out the lease, then runs the task to completion."""

    async def go() -> None:
        async with bus(server) as js:
            ttl = 4
            holder = instance(server, work, work, "a", lease_ttl=ttl).start()
            other = instance(server, work, tmp_path / "host-b", "b", lease_ttl=ttl)
            other.wrapper = ANOTHER_MACHINE
            try:
                await bound(holder)
                await publish_task(
                    js, "w1", {"task_id": "k1", "instructions": directive(sleep_first_run=30)}
                )
                assert await wait_until(lambda: bool(standin_records(work, "start")), 10)
                [first] = standin_records(work, "start")
                other.start()
                await bound(other)
                holder.signal(signal.SIGKILL)
                os.killpg(first["pid"], signal.SIGKILL)
                holder.wait(5)
                r = await one_result(js)
                assert r["status"] == "completed" and r["exit_code"] == 0
                assert other.logged("task_leased_elsewhere")
                assert not other.logged("lease_taken_over")
                [_, again] = standin_records(work, "start")
                assert again["at"] - first["at"] >= ttl - 1  # not before the lease expired
                assert await wait_until(lambda: _zero(js), 5)
                await asyncio.sleep(ACK_WAIT + 0.5)
                assert len(standin_records(work, "start")) == 2
                assert len(standin_records(work, "end")) == 1
            finally:
                holder.stop()
                other.stop()

    run(go())


def test_a_worker_holds_only_its_own_leases(tmp_path: Path) -> None:
    """With its real credentials a worker takes, refreshes and frees its own lease of a task
    id that another worker also runs (fan-out: once each), and can neither read, overwrite,
    delete nor purge the other's: the server refuses."""
    asyncio.run(_own_leases_only(tmp_path))


async def _own_leases_only(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    n = fleet.names
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
            connect(srv.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
        ):
            await create_resources(fleet, admin)
            mine = worker_leases("w1", w1.nc.jetstream(), tmp_path)
            theirs = worker_leases("w2", w2.nc.jetstream(), tmp_path)
            their_lease = await theirs.take("t1", 7)
            my_lease = await mine.take("t1", 3)
            assert isinstance(their_lease, Lease) and isinstance(my_lease, Lease)
            another = worker_leases("w1", w1.nc.jetstream(), tmp_path)
            another.holder = "another poller of w1"
            again = await another.take("t1", 4)
            assert isinstance(again, Held) and again.holder == "poller-of-w1"
            assert again.ttl == 30

            their_key = theirs.subject("t1")
            js1 = w1.nc.jetstream()
            for headers in (
                {"KV-Operation": "DEL"},
                {"KV-Operation": "PURGE", "Nats-Rollup": "sub"},
                {},
            ):
                with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
                    await js1.publish(
                        their_key, b"mine now", headers=headers, timeout=DENIED_TIMEOUT
                    )
            await w1.wait_violation(their_key)
            with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
                denied = w1.nc.jetstream(timeout=DENIED_TIMEOUT)
                await denied.get_msg(n.lease_stream, subject=their_key, direct=True)
            for api in ("STREAM.PURGE", "STREAM.MSG.DELETE", "STREAM.MSG.GET", "DIRECT.GET"):
                subject = f"$JS.API.{api}.{n.lease_stream}"
                with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
                    await w1.nc.request(subject, b"{}", timeout=DENIED_TIMEOUT)
                await w1.wait_violation(subject)

            assert await theirs.refresh(their_lease, 7)  # untouched: still theirs
            assert await mine.refresh(my_lease, 3)
            await mine.release(my_lease)
            assert isinstance(await mine.take("t1", 5), Lease)  # freed, taken again
            assert w2.errors == [] and admin.errors == []


def test_a_refresh_whose_answer_was_lost_keeps_the_lease(
    server: NatsServer, tmp_path: Path
) -> None:
    """On a cluster a write can be stored while its answer is lost (the broker answering
    went away): the next refresh expects a revision that is no longer the last. The lease
    is still the poller's own, for the same delivery, and stays so; written by anybody
    else, or for another delivery, it is lost."""

    async def go() -> None:
        async with bus(server) as js:
            leases = worker_leases("w1", js, tmp_path)
            lease = await leases.take("t1", 3)
            assert isinstance(lease, Lease)
            await leases._write("t1", 3, last=lease.revision)  # stored, its answer lost
            assert await leases.refresh(lease, 3)
            assert await leases.refresh(lease, 3)  # and on from the revision it found

            await leases._write("t1", 4, last=lease.revision)  # another delivery's
            assert not await leases.refresh(lease, 3)
            lease = await leases.take("t2", 5)
            assert isinstance(lease, Lease)
            other = worker_leases("w1", js, tmp_path)
            other.holder = "another poller of w1"
            await other._write("t2", 5, last=lease.revision)
            assert not await leases.refresh(lease, 5)

    run(go())


def test_a_lease_this_poller_left_behind_is_taken_again_at_once(
    server: NatsServer, tmp_path: Path
) -> None:
    """A lease write stored while its answer was lost (asked again after a bus error), or
    one whose release failed (a broker going down), is this poller's own: its next take of
    the task gets it at once instead of waiting out the TTL as if another poller ran it. A
    lease of another poller of the same worker is still held."""

    async def go() -> None:
        async with bus(server) as js:
            leases = worker_leases("w1", js, tmp_path)
            first = await leases._write("t1", 3, last=0)  # stored, its answer lost
            again = await leases.take("t1", 3)
            assert isinstance(again, Lease) and again.revision > first.revision
            # Its release failed; the task is delivered again later.
            later = await leases.take("t1", 9)
            assert isinstance(later, Lease) and later.revision > again.revision

            other = worker_leases("w1", js, tmp_path)
            other.holder = "another poller of w1"
            assert isinstance(await other.take("t2", 5), Lease)
            held = await leases.take("t2", 5)
            assert isinstance(held, Held) and held.holder == "another poller of w1"

    run(go())
