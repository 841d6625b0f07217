"""Each user can do its job on a real broker, and is refused everything else."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.aio.msg import Msg

from fleetctl.identity import natsaccess as na
from tests.support.nscfleet import (
    DENIED_TIMEOUT,
    Conn,
    Fleet,
    connect,
    create_resources,
    fleet_server,
    make_fleet,
)

pytestmark = pytest.mark.integration
TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)
OK_TIMEOUT = 5.0  # what should succeed gets time even on a loaded machine


async def _ping(conn: Conn, subject: str) -> Msg:
    """A health ping as fleetctl would send it: a second try if the subscription that was
    just flushed is not yet visible (seen once in many runs under heavy load)."""
    for _ in range(5):
        try:
            return await conn.nc.request(subject, b"", timeout=OK_TIMEOUT)
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"no responder on {subject}; errors: {conn.errors}")


async def _denied_request(conn: Conn, subject: str) -> None:
    with pytest.raises(TIMEOUTS):
        await conn.nc.request(subject, b"{}", timeout=DENIED_TIMEOUT)
    await conn.wait_violation(subject)


def test_generated_config_passes_nats_server_check(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    with fleet_server(fleet) as srv:
        check = subprocess.run(
            [srv.binary, "-t", "-c", str(srv.config_path)], capture_output=True, text=True
        )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "resolver: MEMORY" in srv.config_path.read_text()


@pytest.mark.parametrize("storage", ["file", "memory"])
def test_worker_fetches_acks_and_publishes_its_result(tmp_path: Path, storage: str) -> None:
    asyncio.run(_worker_happy_path(tmp_path, storage))


async def _worker_happy_path(tmp_path: Path, storage: str) -> None:
    fleet = make_fleet(tmp_path)
    fleet.storage = storage
    n = fleet.names
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
            connect(srv.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
        ):
            await create_resources(fleet, admin)
            ajs = admin.nc.jetstream()
            assert (await ajs.stream_info(n.task_stream)).config.storage == storage

            pjs = pub.nc.jetstream()
            ack = await pjs.publish(n.inbox("w1"), b"task-1", headers={"Nats-Msg-Id": "t1"})
            assert ack.stream == n.task_stream

            wjs = w1.nc.jetstream()
            sub = await wjs.pull_subscribe_bind(n.consumer("w1"), n.task_stream)
            (msg,) = await sub.fetch(1, timeout=OK_TIMEOUT)
            assert msg.data == b"task-1"
            await msg.in_progress()

            async def pong(m: Msg) -> None:
                await m.respond(b"pong")

            await w1.nc.subscribe(n.ping("w1"), cb=pong)
            await w1.nc.flush()
            assert (await _ping(admin, n.ping("w1"))).data == b"pong", w1.errors

            await msg.ack_sync()
            result_ack = await wjs.publish(n.result("w1", "t1"), b"done")
            assert result_ack.stream == n.results_stream
            dead_ack = await wjs.publish(n.dead("w1"), b"gave up on t0")
            assert dead_ack.stream == n.dead_stream

            status = await admin.nc.subscribe(n.status("*"))
            await admin.nc.flush()
            assert await _first_status(w1, status, n.status("w1")) == b"idle"

            # the publisher reads results by subject: it has no consumer of its own
            got = await pjs.get_msg(n.results_stream, subject=n.result("w1", "t1"))
            assert got.data == b"done"

            assert (await ajs.stream_info(n.task_stream)).state.messages == 0  # work queue
            assert w1.errors == [] and pub.errors == [] and admin.errors == []


async def _first_status(worker: Conn, status: Any, subject: str) -> bytes:
    """Status is core NATS, fire and forget: on a loaded machine the first publish can be
    gone before the subscription is live everywhere, so publish until one arrives (what is
    tested is that it may arrive at all), within OK_TIMEOUT."""
    deadline = asyncio.get_running_loop().time() + OK_TIMEOUT
    while True:
        await worker.nc.publish(subject, b"idle")
        await worker.nc.flush()
        try:
            data: bytes = (await status.next_msg(timeout=0.25)).data
            return data
        except nats.errors.TimeoutError:
            if asyncio.get_running_loop().time() > deadline:
                raise


def test_worker_is_refused_everything_else(tmp_path: Path) -> None:
    asyncio.run(_worker_refusals(tmp_path))


async def _worker_refusals(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    n = fleet.names
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
            connect(srv.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
            connect(srv.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
        ):
            await create_resources(fleet, admin)
            ajs = admin.nc.jetstream()
            await pub.nc.jetstream().publish(n.inbox("w2"), b"for-w2")

            # other workers' inboxes and replies, the shared inbox, the task subjects
            for subject in ("_INBOX_w2.>", "_INBOX.>", n.inbox("w2"), f"{n.prefix}.>", ">"):
                await w1.nc.subscribe(subject)
                await w1.wait_violation(subject)

            # binding to another worker's consumer gets nothing, and takes nothing
            stolen = await w1.nc.jetstream().pull_subscribe_bind(n.consumer("w2"), n.task_stream)
            with pytest.raises(TIMEOUTS):
                await stolen.fetch(1, timeout=DENIED_TIMEOUT)
            await w1.wait_violation(f"CONSUMER.MSG.NEXT.{n.task_stream}.{n.consumer('w2')}")
            mine = await w2.nc.jetstream().pull_subscribe_bind(n.consumer("w2"), n.task_stream)
            (msg,) = await mine.fetch(1, timeout=OK_TIMEOUT)
            assert msg.data == b"for-w2"
            await msg.ack_sync()

            # no stream or consumer administration
            await _denied_request(w1, f"$JS.API.STREAM.DELETE.{n.task_stream}")
            await _denied_request(w1, "$JS.API.STREAM.CREATE.EVIL")
            await _denied_request(w1, f"$JS.API.CONSUMER.DELETE.{n.task_stream}.worker-w2")
            await _denied_request(w1, f"$JS.API.CONSUMER.CREATE.{n.task_stream}.evil")
            await _denied_request(w1, f"$JS.API.CONSUMER.INFO.{n.task_stream}.worker-w2")
            await _denied_request(w1, "$JS.API.STREAM.LIST")
            assert (await ajs.stream_info(n.task_stream)).config.name == n.task_stream
            consumers = {c.name for c in await ajs.consumers_info(n.task_stream)}
            assert consumers == {n.consumer("w1"), n.consumer("w2")}

            # no publishing tasks (not even to itself) or another worker's status
            before = (await ajs.stream_info(n.task_stream)).state.messages
            with pytest.raises(TIMEOUTS):
                await w1.nc.jetstream().publish(n.inbox("w2"), b"x", timeout=DENIED_TIMEOUT)
            await w1.nc.publish(n.inbox("w1"), b"x")
            await w1.nc.publish(n.status("w2"), b"x")
            await w1.nc.publish(n.dead("w2"), b"x")
            await w1.wait_violation(n.inbox("w1"))
            await w1.wait_violation(n.status("w2"))
            await w1.wait_violation(n.dead("w2"))
            assert (await ajs.stream_info(n.task_stream)).state.messages == before


def test_publisher_and_admin_do_their_jobs_and_no_more(tmp_path: Path) -> None:
    asyncio.run(_publisher_and_admin(tmp_path))


async def _publisher_and_admin(tmp_path: Path) -> None:
    fleet: Fleet = make_fleet(tmp_path)
    n = fleet.names
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
        ):
            await create_resources(fleet, admin)  # admin: creates streams and consumers
            ajs = admin.nc.jetstream()
            await pub.nc.jetstream().publish(n.inbox("w1"), b"task")  # publisher: tasks

            # publisher: no results forging, no task stealing, no admin, no foreign replies
            await pub.nc.publish(n.result("w1", "t1"), b"forged")
            await pub.wait_violation(n.result("w1", "t1"))
            stolen = await pub.nc.jetstream().pull_subscribe_bind(n.consumer("w1"), n.task_stream)
            with pytest.raises(TIMEOUTS):
                await stolen.fetch(1, timeout=DENIED_TIMEOUT)
            await _denied_request(pub, f"$JS.API.STREAM.DELETE.{n.results_stream}")
            await _denied_request(pub, f"$JS.API.STREAM.PURGE.{n.task_stream}")
            await _denied_request(pub, f"$JS.API.STREAM.MSG.DELETE.{n.task_stream}")
            await _denied_request(pub, f"$JS.API.CONSUMER.CREATE.{n.results_stream}.mine")
            await _denied_request(pub, f"$JS.API.CONSUMER.DELETE.{n.task_stream}.worker-w1")
            for subject in ("_INBOX.>", "_INBOX_w1.>", n.ping("w1"), n.inbox("w1")):
                await pub.nc.subscribe(subject)
                await pub.wait_violation(subject)

            # admin: manages the fleet's streams (the full matrix: test_admin_permissions),
            # but neither publishes nor takes tasks
            await admin.nc.publish(n.inbox("w1"), b"task")
            await admin.wait_violation(n.inbox("w1"))
            grab = await ajs.pull_subscribe_bind(n.consumer("w1"), n.task_stream)
            with pytest.raises(TIMEOUTS):
                await grab.fetch(1, timeout=DENIED_TIMEOUT)
            await admin.wait_violation(f"CONSUMER.MSG.NEXT.{n.task_stream}")
            await admin.nc.subscribe("_INBOX_w1.>")
            await admin.wait_violation("_INBOX_w1.>")
            assert (await ajs.stream_info(n.task_stream)).state.messages == 1
