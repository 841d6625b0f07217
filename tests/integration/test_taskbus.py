"""The publisher's conversations with JetStream (fleetctl/bus/taskbus.py) on a real,
credentialed bus (tests/support/nscfleet.py), as `fleet-publisher` with exactly the
permissions the fleet gives it: publish with deduplication, read stored messages by
sequence and subject, direct gets and their batches, compare-and-set writes of task
records, a worker's consumer, and what each says when there is nothing or it is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest

from fleetctl.bus import taskbus
from fleetctl.bus.names import NatsNames
from fleetctl.identity import natsaccess as na
from nsc.authority import IssuedUser
from tests.support.nscfleet import Fleet, connect, fleet_server, js_api, make_fleet

pytestmark = pytest.mark.integration


@asynccontextmanager
async def as_user(url: str, user: IssuedUser, inbox_prefix: str) -> AsyncIterator[Any]:
    nc = await nats.connect(url, user_credentials=str(user.creds_path), inbox_prefix=inbox_prefix)
    try:
        yield nc
    finally:
        await nc.close()


def on_a_bus(
    tmp_path: Path, talk: Callable[[Fleet, str], Awaitable[None]], without: str = ""
) -> None:
    """`talk(fleet, url)` against a running broker with the fleet's streams (all but
    `without`) and consumers, made by the admin user."""
    fleet = make_fleet(tmp_path, ("w1", "w2"))

    async def run(url: str) -> None:
        async with connect(url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
            for s in fleet.stream_specs():
                if s.name != without:
                    await js_api(admin, f"$JS.API.STREAM.CREATE.{s.name}", s.api_config())
            for c in fleet.consumer_specs():
                body = {"stream_name": c.stream, "config": c.api_config()}
                await js_api(admin, f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}", body)
        await talk(fleet, url)

    with fleet_server(fleet) as server:
        asyncio.run(run(server.url))


def test_a_task_is_stored_once_per_id_and_read_back_by_sequence_and_subject(
    tmp_path: Path,
) -> None:
    async def talk(fleet: Fleet, url: str) -> None:
        n = fleet.names
        async with as_user(url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as nc:
            first = await taskbus.publish(nc, n.inbox("w1"), b'{"task_id": "a"}', "a")
            again = await taskbus.publish(nc, n.inbox("w1"), b'{"task_id": "a"}', "a")
            other = await taskbus.publish(nc, n.inbox("w2"), b'{"task_id": "b"}', "b")
            third = await taskbus.publish(nc, n.inbox("w1"), b"not json", "c")
            assert [first, again, other, third] == [
                taskbus.Published(1, False),
                taskbus.Published(1, True),  # the same id within the window: stored once
                taskbus.Published(2, False),
                taskbus.Published(3, False),
            ]
            stream = n.task_stream
            found = await taskbus.scan(nc, stream, n.inbox("w1"))
            assert [(m.subject, m.seq, m.data) for m in found] == [
                (n.inbox("w1"), 1, b'{"task_id": "a"}'),
                (n.inbox("w1"), 3, b"not json"),
            ]
            assert (found[0].json(), found[1].json()) == ({"task_id": "a"}, None)
            assert found[0].time.endswith("Z")
            assert [m.seq for m in await taskbus.scan(nc, stream, n.inbox("w1"), start=2)] == [3]
            assert await taskbus.last_seq(nc, stream, n.inbox("w2")) == 2
            assert await taskbus.last_seq(nc, stream, n.inbox("nobody")) == 0
            assert await taskbus.msg_get(nc, stream, {"seq": 99}) is None

    on_a_bus(tmp_path, talk)


def test_results_are_read_by_direct_get_one_subject_or_a_batch(tmp_path: Path) -> None:
    async def talk(fleet: Fleet, url: str) -> None:
        n = fleet.names
        async with as_user(url, fleet.workers["w1"], n.inbox_prefix("w1")) as worker:
            js = worker.jetstream()
            for task in ("t1", "t2", "t3"):
                await js.publish(n.result("w1", task), json.dumps({"task_id": task}).encode())
        async with as_user(url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as nc:
            one = await taskbus.direct_get(nc, n.results_stream, n.result("w1", "t2"))
            assert one is not None and (one.subject, one.seq) == (n.result("w1", "t2"), 2)
            assert one.json() == {"task_id": "t2"}
            assert await taskbus.direct_get(nc, n.results_stream, n.result("w1", "t9")) is None
            batch = await taskbus.direct_batch(
                nc, n.results_stream, {"seq": 1, "batch": 10, "next_by_subj": n.results_of("w1")}
            )
            assert [(m.subject, m.seq) for m in batch] == [
                (n.result("w1", "t1"), 1),
                (n.result("w1", "t2"), 2),
                (n.result("w1", "t3"), 3),
            ]
            last = await taskbus.direct_batch(
                nc, n.results_stream, {"multi_last": [n.result("w1", "t3"), "af.result.w1.t9"]}
            )
            assert [m.seq for m in last] == [3]
            empty = {"seq": 1, "batch": 10, "next_by_subj": "af.result.w2.*"}
            assert await taskbus.direct_batch(nc, n.results_stream, empty) == []

    on_a_bus(tmp_path, talk)


def test_a_task_record_is_written_only_over_the_sequence_it_was_read_at(
    tmp_path: Path,
) -> None:
    async def talk(fleet: Fleet, url: str) -> None:
        n = fleet.names
        key, stream = n.record("t1"), n.record_stream
        async with as_user(url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as nc:
            assert await taskbus.direct_get(nc, stream, key) is None
            seq = await taskbus.put(nc, key, b'{"to": "w1"}', 0)
            with pytest.raises(taskbus.WrongLastSequence):
                await taskbus.put(nc, key, b'{"to": "w2"}', 0)  # another writer came first
            stored = await taskbus.direct_get(nc, stream, key)
            assert stored is not None and (stored.seq, stored.data) == (seq, b'{"to": "w1"}')
            newer = await taskbus.put(nc, key, b'{"to": "w2"}', seq)
            assert newer > seq
            await nc.request(key, b"", headers={"KV-Operation": "DEL"})
            assert await taskbus.direct_get(nc, stream, key) is None  # deleted: as if none

    on_a_bus(tmp_path, talk)


def test_a_workers_consumer_is_looked_up_and_a_missing_one_is_none(tmp_path: Path) -> None:
    async def talk(fleet: Fleet, url: str) -> None:
        n = fleet.names
        async with as_user(url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as nc:
            await taskbus.publish(nc, n.inbox("w1"), b"{}", "a")
            # The consumer counts a new message a moment after the stream's PubAck.
            for _ in range(100):
                info = await taskbus.consumer_info(nc, n.task_stream, NatsNames.consumer("w1"))
                if info is None or info["num_pending"]:
                    break
                await asyncio.sleep(0.05)
            assert info is not None and (info["name"], info["num_pending"]) == ("worker-w1", 1)
            missing = await taskbus.consumer_info(nc, n.task_stream, NatsNames.consumer("gone"))
            assert missing is None

    on_a_bus(tmp_path, talk)


def test_a_bus_that_predates_the_task_records_says_so(tmp_path: Path) -> None:
    """The publisher may read and write task records, but this broker has no such stream
    yet (apply creates it): a NoStream error, told apart from a record that is not there."""

    async def talk(fleet: Fleet, url: str) -> None:
        n = fleet.names
        async with as_user(url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as nc:
            with pytest.raises(taskbus.NoStream) as none:
                await taskbus.direct_get(nc, n.record_stream, n.record("t1"))
            assert str(none.value) == (
                f"reading {n.record('t1')} from {n.record_stream}: no stream takes it"
            )
            with pytest.raises(taskbus.NoStream):
                await taskbus.put(nc, n.record("t1"), b"{}", 0)

    on_a_bus(tmp_path, talk, without=NatsNames("af").record_stream)


def test_dead_letters_are_purged_by_worker_or_all_and_only_there(tmp_path: Path) -> None:
    async def talk(fleet: Fleet, url: str) -> None:
        n = fleet.names
        for worker, count in (("w1", 2), ("w2", 1)):
            async with as_user(url, fleet.workers[worker], n.inbox_prefix(worker)) as w:
                for i in range(count):
                    await w.jetstream().publish(n.dead(worker), f"dead {i}".encode())
        async with as_user(url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as nc:
            await taskbus.publish(nc, n.inbox("w1"), b"{}", "queued")
            assert await taskbus.purge(nc, n.dead_stream, n.dead("w1")) == 2
            left = await taskbus.scan(nc, n.dead_stream, "af.dead.>")
            assert [(m.subject, m.data) for m in left] == [(n.dead("w2"), b"dead 0")]
            assert await taskbus.purge(nc, n.dead_stream) == 1
            assert await taskbus.scan(nc, n.dead_stream, "af.dead.>") == []
            assert await taskbus.last_seq(nc, n.task_stream, n.inbox("w1")) == 1  # untouched

    on_a_bus(tmp_path, talk)
