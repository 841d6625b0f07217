"""Task records on a real broker with real pollers and the fleet's real creds: the publisher
records whom each task was sent to, no worker can read or write that record, and `results`,
`tasks` and `fleetctl.tasks.client` read a task's targets from it (docs/messages.md, "Task record";
docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from fleetctl.identity import natsaccess as na
from fleetctl.tasks.client import Client, NoSuchTask
from nsc.permissions import Permission, Permissions
from tests.support.nscfleet import DENIED_TIMEOUT, Conn, connect, fleet_server, make_fleet
from tests.support.poller_harness import directive, wait_until
from tests.support.poller_harness import run as asyncio_run
from tests.support.taskfleet import TaskFleet, task_fleet

pytestmark = pytest.mark.integration
TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)
WORKERS: dict[str, dict[str, Any]] = {"w1": {}, "w2": {}, "w3": {}}


@pytest.fixture
def tf(tmp_path: Path) -> Iterator[TaskFleet]:
    with task_fleet(tmp_path, WORKERS) as fleet:
        yield fleet


def _json(tf: TaskFleet, *args: str) -> dict[str, Any]:
    done = tf.fleetctl(*args, "--json")
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


async def _publish_as(tf: TaskFleet, worker: str, subject: str, body: dict[str, Any]) -> None:
    """A worker's own publish, with its own creds (what a compromised agent can do)."""
    async with connect(tf.url, tf.fleet.workers[worker], f"_INBOX_{worker}") as conn:
        await conn.nc.jetstream().publish(subject, json.dumps(body).encode(), timeout=5)


def _forged(worker: str, task_id: str) -> dict[str, Any]:
    return {"version": 1, "task_id": task_id, "worker_id": worker, "status": "completed"}


def test_an_answer_from_a_worker_never_sent_the_task_is_marked_unsolicited(
    tf: TaskFleet,
) -> None:
    sent = _json(tf, "task", "send", "hello", "--to", "w1", "--id", "asked-1", "--wait")
    assert [r["worker_id"] for r in sent["results"]] == ["w1"]
    # w2 was never sent asked-1, but may publish on its own subject for any task id
    asyncio_run(
        _publish_as(tf, "w2", tf.fleet.names.result("w2", "asked-1"), _forged("w2", "asked-1"))
    )

    shown = _json(tf, "results", "asked-1")
    assert [(r["worker_id"], r["status"], r["unsolicited"]) for r in shown["results"]] == [
        ("w1", "completed", False),
        ("w2", "completed", True),
    ]
    record = shown["record"]
    assert [t["worker_id"] for t in record["targets"]] == ["w1"]
    assert record["sender"]["user"] == na.PUBLISHER_USER
    assert record["sender"]["public_key"] == tf.fleet.publisher.public_key
    assert record["task_bytes"] > 0 and record["repo"] is None and record["sends"] == 1

    table = tf.fleetctl("results", "asked-1")
    assert table.returncode == 0, table.stderr
    assert "w2 (unsolicited)" in table.stdout
    assert "sent to   NO: never sent this task" in table.stdout
    assert "w1 (unsolicited)" not in table.stdout

    listed = _json(tf, "tasks")
    (row,) = [t for t in listed["tasks"] if t["task_id"] == "asked-1"]
    assert row["at"] == record["at"]
    assert row["targets"] == [
        {"worker_id": "w1", "state": "completed", "unsolicited": False},
        {"worker_id": "w2", "state": "completed", "unsolicited": True},
    ]
    by_w2 = _json(tf, "tasks", "--worker", "w2")  # what w2 answered, asked or not
    assert [t["task_id"] for t in by_w2["tasks"]] == ["asked-1"]
    assert _json(tf, "tasks", "--worker", "w3")["tasks"] == []

    with Client.open(tf.fleet_path, server=tf.url, creds=tf.fleet.publisher.creds_path) as c:
        got = c.results("asked-1")
    assert [(r.worker_id, r.unsolicited) for r in got] == [("w1", False), ("w2", True)]


def test_an_unknown_task_is_no_such_task(tf: TaskFleet) -> None:
    for args in (("results", "never-sent"), ("results", "never-sent", "--watch", "--json")):
        done = tf.fleetctl(*args, timeout=30)
        assert done.returncode == 1, done.stdout
        assert done.stderr.strip() == (
            "error: no such task: never-sent (the bus has no record of it and no result)"
        )
        assert done.stdout == ""


def test_a_task_sent_without_a_record_is_shown_unchecked(tf: TaskFleet) -> None:
    """Published as fleetctl versions before task records did (no record): its answers are
    still read by subject, with a note, and `unsolicited` is null (nothing to check)."""

    async def raw_send() -> None:
        async with connect(tf.url, tf.fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub:
            task = {"version": 1, "task_id": "old-1", "instructions": "hello"}
            await pub.nc.jetstream().publish(tf.fleet.names.inbox("w1"), json.dumps(task).encode())

    asyncio_run(raw_send())
    with Client.open(tf.fleet_path, server=tf.url, creds=tf.fleet.publisher.creds_path) as c:

        def stored() -> bool:
            try:
                return bool(c.results("old-1"))
            except NoSuchTask:
                return False

        assert asyncio_run(wait_until(stored, 30))
    done = tf.fleetctl("results", "old-1", "--watch", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["record"] is None
    assert [(r["worker_id"], r["unsolicited"]) for r in body["results"]] == [("w1", None)]
    text = tf.fleetctl("results", "old-1")
    assert "note: old-1: no record of it: sent before this fleet kept task records" in text.stderr
    assert "none can be checked against the task's targets" in text.stderr
    assert "old-1" not in [t["task_id"] for t in _json(tf, "tasks")["tasks"]]


def test_one_task_is_read_by_subject_whatever_else_the_window_holds(tf: TaskFleet) -> None:
    """What `results` (and each `--watch` look) asks the bus for one task does not grow
    with the window: a record get, one batched get of `af.result.*.<task>` and one of its
    judgments, plus a look at the copy of each target still without a result."""
    creds = tf.fleet.publisher.creds_path
    with Client.open(tf.fleet_path, server=tf.url, creds=creds) as client:
        done = client.wait(client.send(directive(), to=["w1", "w2"], task_id="one"), timeout=30)
        assert [r.status for r in done] == ["completed", "completed"]

        def asked(task_id: str) -> int:
            before = client._conn.nc.stats["out_msgs"]
            client.answers(task_id)
            return int(client._conn.nc.stats["out_msgs"] - before)

        alone = asked("one")
        others = [client.send(directive(), to=["w1", "w2", "w3"]) for _ in range(60)]
        assert all(r.final for r in client.wait(others, timeout=120))
        for s in others[:30]:  # dead letters in the window too
            asyncio_run(_dead_letter(tf, s.task_id))
        assert asked("one") == alone == 3
        # a target still without a result costs a look at its copy and its consumer, and
        # one still queued a look at its cancel mark
        tf.pollers["w3"].stop()
        client.send(directive(), to=["w3"], task_id="waiting")
        assert asked("waiting") == 6
        assert [r.status for r in client.results("waiting")] == ["queued"]


async def _dead_letter(tf: TaskFleet, task_id: str) -> None:
    letter = {"version": 1, "worker_id": "w1", "task_id": task_id, "reason": "x"}
    await _publish_as(tf, "w1", tf.fleet.names.dead("w1"), letter)


def test_a_copy_acked_without_a_result_is_lost_not_running_for_ever(tf: TaskFleet) -> None:
    """A worker may ack its own deliveries without a result (docs/security.md): the record
    tells `results --watch` the copy is gone, so it ends instead of waiting for ever."""
    tf.pollers["w1"].stop()
    sent = tf.fleetctl("task", "send", "hello", "--to", "w1", "--to", "w2", "--id", "acked-1")
    assert sent.returncode == 0, sent.stderr

    async def ack_as_w1() -> None:
        n = tf.fleet.names
        async with connect(tf.url, tf.fleet.workers["w1"], n.inbox_prefix("w1")) as conn:
            sub = await conn.nc.jetstream().pull_subscribe_bind(n.consumer("w1"), n.task_stream)
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.ack_sync()

    asyncio_run(ack_as_w1())
    done = tf.fleetctl("results", "acked-1", "--watch", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    states = {r["worker_id"]: r for r in json.loads(done.stdout)["results"]}
    assert states["w2"]["status"] == "completed"
    assert states["w1"]["status"] == "lost"
    assert "neither a result nor a dead letter" in states["w1"]["reason"]


def test_sends_of_one_task_id_extend_its_record_and_lose_no_target(tf: TaskFleet) -> None:
    """Each send writes the record with compare-and-set: two coordinators sending the same
    id at once both end up in it."""
    creds = tf.fleet.publisher.creds_path
    ids = [f"same-{i}" for i in range(5)]

    def coordinator(worker: str) -> None:
        with Client.open(tf.fleet_path, server=tf.url, creds=creds) as client:
            for task_id in ids:
                assert client.send(directive(), to=[worker], task_id=task_id).record_error is None

    threads = [threading.Thread(target=coordinator, args=(w,)) for w in ("w2", "w3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with Client.open(tf.fleet_path, server=tf.url, creds=creds) as client:
        for task_id in ids:
            record = client.record(task_id)
            assert record is not None
            assert sorted(t.worker_id for t in record.targets) == ["w2", "w3"], record
            assert record.sends == 2
        again = client.send(directive(), to=["w1"], task_id=ids[0])
        record = client.record(ids[0])
    assert again.record_error is None and record is not None
    assert [t.worker_id for t in record.targets][-1] == "w1" and record.sends == 3


def test_publisher_creds_issued_before_task_records_still_send_and_say_so(
    tf: TaskFleet,
) -> None:
    """Before `apply` re-issues them, the previous version's publisher creds cannot write
    records: the task is sent, with a warning, and `results` shows its answers unchecked."""
    current = na.publisher_permissions(tf.fleet.names)
    before = Permissions(
        pub=Permission.of(allow=[s for s in current.pub.allow if "RECORDS" not in s]),
        sub=current.sub,
    )
    old = tf.fleet.authority.issue_user("fleet-publisher-old", before)
    env = {"FLEETCTL_NATS_CREDS": str(old.creds_path)}
    sent = _run(tf, env, "task", "send", "hello", "--to", "w1", "--id", "unrec-1", "--wait")
    assert sent.returncode == 0, sent.stderr
    assert "warning: unrec-1 was sent but not recorded (the credentials of " in sent.stderr
    assert "`fleetctl apply` (or `fleetctl creds init`) issues new ones" in sent.stderr
    shown = _run(tf, env, "results", "unrec-1")
    assert shown.returncode == 0, shown.stderr
    assert "may not read them" in shown.stderr
    # and the record was never written: the current publisher finds none either
    assert _json(tf, "results", "unrec-1")["record"] is None


def _run(tf: TaskFleet, env: dict[str, str], *args: str) -> Any:
    import subprocess

    from tests.support.taskfleet import FLEETCTL

    return subprocess.run(
        [FLEETCTL, *args], capture_output=True, text=True, env=tf.env() | env, timeout=60
    )


async def _refused(conn: Conn, subject: str, body: bytes = b"{}") -> None:
    with pytest.raises(TIMEOUTS):
        await conn.nc.request(subject, body, timeout=DENIED_TIMEOUT)
    await conn.wait_violation(subject)


def test_only_the_publisher_writes_and_reads_task_records(tmp_path: Path) -> None:
    asyncio.run(_record_permissions(tmp_path))


async def _record_permissions(tmp_path: Path) -> None:
    from tests.support.nscfleet import create_resources

    fleet = make_fleet(tmp_path, ("w1", "w2"))
    n = fleet.names
    stream, key = n.record_stream, n.record("t1")
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
            connect(srv.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
        ):
            await create_resources(fleet, admin)
            record = b'{"version": 1, "task_id": "t1"}'
            # the publisher writes with compare-and-set and reads by subject or since a time
            ack = await pub.nc.request(
                key, record, timeout=5, headers={"Nats-Expected-Last-Subject-Sequence": "0"}
            )
            assert json.loads(ack.data)["seq"] == 1
            got = await pub.nc.request(f"$JS.API.DIRECT.GET.{stream}.{key}", b"", timeout=5)
            assert got.data == record
            batch = json.dumps({"seq": 1, "next_by_subj": n.all_records, "batch": 10}).encode()
            got = await pub.nc.request(f"$JS.API.DIRECT.GET.{stream}", batch, timeout=5)
            assert got.data == record
            # ... but neither deletes nor purges them
            await _refused(pub, f"$JS.API.STREAM.PURGE.{stream}")
            await _refused(pub, f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq": 1}')

            # a worker: no write, no read, by any route
            await w1.nc.publish(key, b'{"forged": true}')
            await w1.wait_violation(key)
            with pytest.raises(TIMEOUTS):
                await w1.nc.jetstream().publish(n.record("t2"), b"x", timeout=DENIED_TIMEOUT)
            await _refused(w1, f"$JS.API.DIRECT.GET.{stream}.{key}", b"")
            await _refused(w1, f"$JS.API.DIRECT.GET.{stream}", batch)
            await _refused(w1, f"$JS.API.STREAM.MSG.GET.{stream}", b'{"seq": 1}')
            await _refused(w1, f"$JS.API.STREAM.INFO.{stream}")
            await _refused(w1, f"$JS.API.CONSUMER.CREATE.{stream}.spy")
            await w1.nc.subscribe(n.all_records)
            await w1.wait_violation(n.all_records)

            # admin: manages the bucket (info here; create in test_admin_permissions), reads
            # and writes no record
            info = await admin.nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
            assert json.loads(info.data)["state"]["messages"] == 1
            await _refused(admin, f"$JS.API.DIRECT.GET.{stream}.{key}", b"")
            await _refused(admin, f"$JS.API.DIRECT.GET.{stream}", batch)
            await _refused(admin, f"$JS.API.STREAM.MSG.GET.{stream}", b'{"seq": 1}')
            await admin.nc.publish(key, b"x")
            await admin.wait_violation(key)

            # nothing but the publisher's one write is stored
            info = await admin.nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
            assert json.loads(info.data)["state"]["messages"] == 1
            got = await pub.nc.request(f"$JS.API.DIRECT.GET.{stream}.{key}", b"", timeout=5)
            assert got.data == record


def test_publisher_creds_issued_before_judgments_read_results_without_asking_for_them(
    tf: TaskFleet,
) -> None:
    """Creds issued before judgments may not read them, and a refused read is only a
    timeout: `results` does not ask (one request fewer), and shows no judgment."""
    current = na.publisher_permissions(tf.fleet.names)
    before = Permissions(
        pub=Permission.of(allow=[s for s in current.pub.allow if "JUDGMENTS" not in s]),
        sub=current.sub,
    )
    old = tf.fleet.authority.issue_user("fleet-publisher-prejudged", before)
    with Client.open(tf.fleet_path, server=tf.url, creds=tf.fleet.publisher.creds_path) as now:
        now.wait(now.send(directive(), to=["w1"], task_id="prejudged"), timeout=30)
        before_msgs = now._conn.nc.stats["out_msgs"]
        now.answers("prejudged")
        asked_now = now._conn.nc.stats["out_msgs"] - before_msgs
    with Client.open(tf.fleet_path, server=tf.url, creds=old.creds_path) as then:
        before_msgs = then._conn.nc.stats["out_msgs"]
        found = then.answers("prejudged")
        asked_then = then._conn.nc.stats["out_msgs"] - before_msgs
        assert then._conn.nc.stats["errors_received"] == 0  # nothing refused
    assert (asked_now, asked_then) == (3, 2)
    assert [(r.worker_id, r.status, r.judgment) for r in found.results] == [
        ("w1", "completed", None)
    ]
