"""The attack of issue #21 run again against the final code, and the variations its fixes
might have missed: each attempt with a fleet identity's own issued creds on a real broker,
real pollers and the real `fleetctl` commands. docs/security.md ("Attack replay") lists every
attempt, what was expected, what was observed, and the test that shows it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from fleetctl.bus import client as bus_client
from fleetctl.bus.client import Identity, at
from fleetctl.config.schema import NatsSettings
from fleetctl.identity import natsaccess as na
from fleetctl.identity.fleetusers import INBOX_PREFIXES
from poller.budget import today
from tests.support.natsserver import free_port
from tests.support.nscfleet import (
    DENIED_TIMEOUT,
    Conn,
    Fleet,
    connect,
    create_resources,
    fleet_server,
    make_fleet,
)
from tests.support.poller_harness import (
    Poller,
    directive,
    poller_env,
    run,
    standin_records,
    wait_until,
)
from tests.support.taskfleet import FLEETCTL, TaskFleet, task_fleet

pytestmark = pytest.mark.integration

ESC, CSI = "\x1b", "\x9b"  # a terminal's escape, and its one-byte C1 form
# What a compromised worker writes where fleetctl prints it: clear the screen, move up and
# erase the line above (where "(unsolicited)" stands), conceal, a hyperlink, the clipboard.
HOSTILE = (
    f"{ESC}[2J{ESC}[1A{ESC}[2K{ESC}[8mhidden{ESC}]8;;http://evil.example/{ESC}\\link"
    f"{ESC}]52;c;cHduZWQ={ESC}\\{CSI}31mred\rover\bback\x07"
)


def _json(tf: TaskFleet, *args: str, admin: bool = False) -> dict[str, Any]:
    done = tf.fleetctl(*args, "--json", admin=admin)
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


async def _as_worker(tf: TaskFleet, worker: str, subject: str, data: bytes) -> None:
    """A plain JetStream publish with a worker's own creds: what a compromised agent does."""
    n = tf.fleet.names
    async with connect(tf.url, tf.fleet.workers[worker], n.inbox_prefix(worker)) as conn:
        await conn.nc.jetstream().publish(subject, data, timeout=5)


def _no_terminal_codes(done: subprocess.CompletedProcess[str]) -> None:
    for stream in (done.stdout, done.stderr):
        assert not any(c in stream for c in (ESC, CSI, "\r", "\b", "\x07")), repr(stream)


def test_what_a_worker_writes_reaches_no_terminal_as_codes(tmp_path: Path) -> None:
    """A compromised worker answers a task it was never sent, dead-letters one and answers
    pings with terminal codes in every field fleetctl prints: `results`, `dead list`,
    `dead show` and `status` show them escaped (`\\x1b`), so nothing of it can clear the
    screen, erase the "(unsolicited)" line above it, hide text or set the clipboard."""
    with task_fleet(tmp_path, {"w1": {}, "w2": {"enabled": False}, "w3": {}}) as tf:
        _json(tf, "task", "send", "hi", "--to", "w1", "--id", "t1", "--wait")
        forged = {
            "version": 1,
            "task_id": "t1",
            "status": "completed",
            "output": f"fine\n{HOSTILE}\n",
            "model": HOSTILE,
            "host": HOSTILE,
            "llm": HOSTILE,
            "error": HOSTILE,
            "exit_code": HOSTILE,
            "git": {"branch": HOSTILE, "commit": HOSTILE},
        }
        n = tf.fleet.names
        run(_as_worker(tf, "w3", n.result("w3", "t1"), json.dumps(forged).encode()))
        letter = {"task_id": "t1", "reason": HOSTILE, "task": HOSTILE, "at": HOSTILE}
        run(_as_worker(tf, "w3", n.dead("w3"), json.dumps(letter).encode()))

        for args in (["results", "t1"], ["results", "t1", "--full"], ["results", "t1", "--diff"]):
            shown = tf.fleetctl(*args)
            assert shown.returncode == 0, shown.stderr
            _no_terminal_codes(shown)
            assert "\\x1b[" in shown.stdout and "\\x9b" in shown.stdout, shown.stdout
        assert "(unsolicited)" in tf.fleetctl("results", "t1").stdout
        dead = tf.fleetctl("dead", "list")
        _no_terminal_codes(dead)
        assert "\\x1b" in dead.stdout
        [seq] = [d["seq"] for d in _json(tf, "dead", "list")["dead"]]
        show = tf.fleetctl("dead", "show", str(seq))
        _no_terminal_codes(show)
        assert show.stdout.count("\\x1b[2J") >= 2, show.stdout

        async def answer_pings() -> subprocess.CompletedProcess[str]:
            async with connect(tf.url, tf.fleet.workers["w3"], n.inbox_prefix("w3")) as w3:
                beat = {"worker_id": "w3", "poller_version": HOSTILE, "state": HOSTILE}

                async def pong(msg: Any) -> None:
                    await msg.respond(json.dumps(beat).encode())

                tf.pollers["w3"].stop()  # the attacker answers in its place
                await w3.nc.subscribe(n.ping("w3"), cb=pong)
                argv = [FLEETCTL, "status", "--no-hosts"]
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    env=tf.env(admin=True),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await proc.communicate()
                return subprocess.CompletedProcess(
                    argv, proc.returncode or 0, out.decode(), err.decode()
                )

        status = run(answer_pings())
        _no_terminal_codes(status)
        assert "\\x1b[2J" in status.stdout, status.stdout


# ---- a worker's and the publisher's creds: headers that purge, rewrite or schedule --------

REFUSED_HEADERS: list[tuple[dict[str, str], str]] = [
    ({"Nats-Rollup": "all"}, "rollup not permitted"),
    ({"Nats-Rollup": "sub"}, "rollup not permitted"),
    ({"KV-Operation": "PURGE", "Nats-Rollup": "sub"}, "rollup not permitted"),  # kv purge
    ({"Nats-Incr": "1"}, "message counters is disabled"),
    (
        {"Nats-Batch-Id": "b1", "Nats-Batch-Sequence": "1", "Nats-Batch-Commit": "1"},
        "atomic publish is disabled",
    ),
    (
        {"Nats-Schedule": "@at 2030-01-01T00:00:00Z", "Nats-Schedule-Target": "af.worker.w2.inbox"},
        "message schedules is disabled",
    ),
]
TTL = {"Nats-TTL": "1s"}


async def _states(admin: Conn, fleet: Fleet) -> dict[str, tuple[int, int, int]]:
    """(messages, first and last sequence) of every stream of the fleet."""
    found = {}
    for spec in fleet.stream_specs():
        info = await admin.nc.jetstream().stream_info(spec.name)
        found[spec.name] = (info.state.messages, info.state.first_seq, info.state.last_seq)
    return found


async def _says(conn: Conn, subject: str, headers: dict[str, str]) -> str:
    """What the stream answers a publish with these headers: an error, or 'stored'."""
    reply = await conn.nc.request(subject, b'{"usd": 1}', timeout=5, headers=headers)
    answer = json.loads(reply.data)
    return str(answer["error"]["description"]) if "error" in answer else "stored"


async def _refused_call(conn: Conn, subject: str, body: dict[str, Any]) -> None:
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await conn.nc.request(subject, json.dumps(body).encode(), timeout=DENIED_TIMEOUT)
    await conn.wait_violation(subject)


def test_no_stream_takes_a_header_that_purges_rewrites_or_schedules(tmp_path: Path) -> None:
    """Item 1 and its variations: every header that makes JetStream purge, count, batch or
    schedule, from a worker on each subject it may write (its result, its dead letters,
    its lease, its own and the fleet's spend counter) and from the publisher on each it
    may write (a worker's inbox, a task record), is refused by the stream, as is a
    per-message TTL on the three streams; and the purge and delete API of every stream is
    refused by permissions (the publisher's purge of dead letters aside, its job). No
    stream changes. A TTL on a bucket key is taken (leases need it): the writer's own key
    vanishing, as it could delete it anyway."""
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    n = fleet.names
    day = today()
    spend = f"$KV.{n.spend_bucket}"
    with fleet_server(fleet) as server:

        async def go() -> None:
            async with (
                connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                connect(server.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
                connect(server.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
                connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
            ):
                await create_resources(fleet, admin)
                j2, jp = w2.nc.jetstream(), pub.nc.jetstream()
                await jp.publish(n.inbox("w2"), b'{"task_id": "t1", "instructions": "hi"}')
                await jp.publish(n.record("t1"), b'{"version": 1}')
                await j2.publish(n.result("w2", "t1"), b'{"status": "completed"}')
                await j2.publish(n.dead("w2"), b'{"task_id": "t0"}')
                await j2.publish(f"$KV.{n.lease_bucket}.w2.t1", b'{"holder": "w2"}')
                await j2.publish(f"{spend}.worker.w2.{day}", b'{"usd": 1.0}')
                await j2.publish(f"{spend}.fleet.{day}", b'{"usd": 1.0}')
                before = await _states(admin, fleet)

                writes = [
                    (w1, n.result("w1", "t1"), False),
                    (w1, n.dead("w1"), False),
                    (w1, f"$KV.{n.lease_bucket}.w1.t1", True),
                    (w1, f"{spend}.worker.w1.{day}", True),
                    (w1, f"{spend}.fleet.{day}", True),
                    (pub, n.inbox("w2"), False),
                    (pub, n.record("t1"), True),
                ]
                for conn, subject, bucket in writes:
                    for headers, refusal in REFUSED_HEADERS:
                        assert await _says(conn, subject, headers) == refusal, (subject, headers)
                    if not bucket:
                        assert await _says(conn, subject, TTL) == "per-message TTL is disabled"
                assert await _states(admin, fleet) == before

                calls: list[tuple[Conn, str, dict[str, Any]]] = []
                for spec in fleet.stream_specs():
                    for conn in (w1, pub):
                        calls.append((conn, f"$JS.API.STREAM.MSG.DELETE.{spec.name}", {"seq": 1}))
                        if not (conn is pub and spec.name == n.dead_stream):
                            purge = {"filter": ">"}
                            calls.append((conn, f"$JS.API.STREAM.PURGE.{spec.name}", purge))
                await asyncio.gather(*(_refused_call(c, s, b) for c, s, b in calls))
                assert await _states(admin, fleet) == before
                assert w2.errors == [] and admin.errors == []

                # What is taken: a delete marker or a TTL on a key of the writer's own (the
                # publisher's record: its own word, as every record is).
                deleted = {"KV-Operation": "DEL"}
                assert await _says(pub, n.record("t1"), deleted) == "stored"
                assert await _says(pub, n.record("t2"), TTL) == "stored"

        run(go())


# ---- a worker's creds: whose answer it is -----------------------------------------------


def test_headers_stored_with_a_result_do_not_change_whose_it_is(tmp_path: Path) -> None:
    """Item 13's variation: worker w2 answers a task sent to w1 and stores, with its answer,
    the headers a direct get answers with (`Nats-Subject` naming w1's result subject, a
    sequence, a stream), in both spellings. The server's own headers come after the stored
    ones and are what fleetctl reads: the answer is w2's, unsolicited, and w1's stands."""
    with task_fleet(tmp_path, {"w1": {}, "w2": {}}) as tf:
        _json(tf, "task", "send", directive(print="real"), "--to", "w1", "--id", "t1", "--wait")
        n = tf.fleet.names
        forged = {"version": 1, "task_id": "t1", "worker_id": "w1", "status": "completed"}
        forged["output"] = "FORGED"

        async def forge() -> None:
            async with connect(tf.url, tf.fleet.workers["w2"], n.inbox_prefix("w2")) as w2:
                for name in ("Nats-Subject", "nats-subject"):
                    headers = {name: n.result("w1", "t1"), "Nats-Sequence": "1"}
                    headers["Nats-Stream"] = n.results_stream
                    await w2.nc.jetstream().publish(
                        n.result("w2", "t1"), json.dumps(forged).encode(), headers=headers
                    )

        run(forge())
        shown = _json(tf, "results", "t1")["results"]
        assert [(r["worker_id"], r["output"], r.get("unsolicited")) for r in shown] == [
            ("w1", "real", False),
            ("w2", "FORGED", True),
        ], shown
        [row] = _json(tf, "tasks")["tasks"]
        assert row["targets"] == [
            {"worker_id": "w1", "state": "completed", "unsolicited": False},
            {"worker_id": "w2", "state": "completed", "unsolicited": True},
        ], row


# ---- a worker's creds: a flood of its own keys (a residual) -------------------------------


def test_a_flood_of_its_own_keys_pushes_out_other_workers_leases_spend_and_dead_letters(
    tmp_path: Path,
) -> None:
    """The residual docs/security.md states ("Floods of a worker's own keys"): the lease and
    spend buckets and the dead-letter stream drop their oldest messages when full, whoever
    wrote them, and no permission bounds how many keys of its own a worker writes. So w1,
    writing only its own keys, pushes out w2's running task's lease (w2's poller logs
    `lease_lost` and finishes the task once: what the lease is for, a second run while a
    frozen poller's CLI still runs, is then possible again), w2's own spend counter and the
    fleet's (read as 0 spent), and w2's dead letters. It takes at defaults 64 MiB of lease
    keys and 16 MiB of spend keys (0.4 s here), or a dead_max_bytes of dead letters.
    If this ever fails, the residual is closed: update docs/security.md.

    The lease's 64 MiB must land between two of its holder's refreshes (every ack_wait/3):
    a refresh in the middle of the flood writes the key again behind most of it, and on a
    loaded machine the flood takes seconds. So w2's poller is frozen (SIGSTOP) during the
    flood, as a poller is when its lease matters, for less than the ack wait (no second
    delivery), and goes on long before its CLI ends, so its next refresh finds the key
    gone."""
    mib = 1024 * 1024
    settings = NatsSettings(ack_wait=15, duplicate_window=60, dead_max_bytes=8 * mib)
    fleet = make_fleet(tmp_path, ("w1", "w2"), settings=settings)
    n = fleet.names
    spend = f"$KV.{n.spend_bucket}"
    day = today()
    work = tmp_path / "work"
    work.mkdir()
    with fleet_server(fleet) as server:

        async def go(poller: Poller) -> None:
            async with (
                connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
                connect(server.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
                connect(server.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
            ):
                await create_resources(fleet, admin)
                poller.start()
                j2, jp = w2.nc.jetstream(), pub.nc.jetstream()
                await jp.publish(n.inbox("w2"), b"not json")  # w2 dead-letters it
                await j2.publish(f"{spend}.worker.w2.{day}", b'{"usd": 3.0}')
                await j2.publish(f"{spend}.fleet.{day}", b'{"usd": 3.0}')
                task = {"task_id": "long", "instructions": directive(sleep=10, print="done")}
                await jp.publish(n.inbox("w2"), json.dumps(task).encode())
                lease = f"$KV.{n.lease_bucket}.w2.long"
                keys = [
                    (n.lease_stream, lease),
                    (n.spend_stream, f"{spend}.worker.w2.{day}"),
                    (n.spend_stream, f"{spend}.fleet.{day}"),
                ]

                async def present() -> list[bool]:
                    found = []
                    for stream, key in keys:
                        try:
                            await j2.get_msg(stream, subject=key, direct=True)
                            found.append(True)
                        except nats.js.errors.NotFoundError:
                            found.append(False)
                    return found

                async def ready() -> bool:
                    return await present() == [True] * 3 and bool(poller.logged("task_rejected"))

                async def pushed_out() -> bool:
                    return await present() == [False, False, False]

                assert await wait_until(ready, 20), poller.events()[-5:]
                poller.signal(signal.SIGSTOP)
                try:
                    blob = b"x" * 4000
                    for prefix, count in (
                        ("$KV.AF_LEASES.w1.f", 17000),
                        (f"{spend}.worker.w1.f", 4300),
                    ):
                        for i in range(count):
                            await w1.nc.publish(f"{prefix}{i}", blob)
                        await w1.nc.flush()  # the broker has them; its streams store them next
                    for _ in range(9):
                        await w1.nc.jetstream().publish(n.dead("w1"), b"x" * (1000 * 1024))
                    assert await wait_until(pushed_out, 5), await present()
                finally:
                    poller.signal(signal.SIGCONT)
                info = await admin.nc.request(
                    f"$JS.API.STREAM.INFO.{n.dead_stream}",
                    json.dumps({"subjects_filter": ">"}).encode(),
                    timeout=5,
                )
                assert list(json.loads(info.data)["state"]["subjects"]) == [n.dead("w1")]
                assert w1.violations() == []

                async def stored() -> bool:
                    try:
                        await jp.get_msg(n.results_stream, subject=n.result("w2", "long"))
                    except nats.js.errors.NotFoundError:
                        return False
                    return True

                assert await wait_until(lambda: bool(poller.logged("lease_lost")), 15)
                assert await wait_until(stored, 20), poller.events()[-5:]
                msg = await jp.get_msg(n.results_stream, subject=n.result("w2", "long"))
                result = json.loads(msg.data or b"")
                assert (result["status"], result["attempt"]) == ("completed", 1)
                assert [r["task_id"] for r in standin_records(work, "start")] == ["long"]

        env = poller_env(server.url, "w2", work, NATS_CREDS=str(fleet.workers["w2"].creds_path))
        poller = Poller(env, work / "poller.log")
        try:
            run(go(poller))
        finally:
            poller.stop()


# ---- a worker's creds and a local user's monitor: replies aimed at fleetctl itself -------


def _subscriptions(monitor: int, prefix: str) -> list[str]:
    """Every subscription on the broker whose subject starts with `prefix`, as a local user
    reads them where `nats.monitor_port` is set."""
    url = f"http://127.0.0.1:{monitor}/connz?subs=1"
    with urllib.request.urlopen(url, timeout=5) as r:
        connz = json.load(r)
    return [
        s
        for c in connz.get("connections") or []
        for s in c.get("subscriptions_list") or []
        if s.startswith(prefix)
    ]


async def _aim(w2: Conn, tf: TaskFleet, target: str) -> None:
    """Everything worker w2 may publish that makes the server answer to `target`: a PubAck,
    API and direct-get answers (a stored message with a forged `Status: 409`, a 404), a
    no-responders status, and the answers to a pull on its own consumer."""
    n, nc = tf.fleet.names, w2.nc
    direct = f"$JS.API.DIRECT.GET.{n.results_stream}"
    await nc.publish(n.result("w2", "aimed"), b"{}", reply=target)
    await nc.publish(f"$JS.API.CONSUMER.INFO.{n.task_stream}.worker-w2", b"", reply=target)
    await nc.publish(f"{direct}.{n.result('w2', 'aimed')}", b"", reply=target)
    await nc.publish(f"{direct}.{n.result('w2', 'status')}", b"", reply=target)
    await nc.publish(f"{direct}.{n.result('w2', 'nothing')}", b"", reply=target)
    await nc.publish(n.status("w2"), b"{}", reply=target)
    pull = json.dumps({"batch": 1, "expires": 300_000_000}).encode()
    await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{n.task_stream}.worker-w2", pull, reply=target)
    await nc.flush()


def test_replies_aimed_at_the_publishers_and_the_admins_inboxes_change_nothing(
    tmp_path: Path,
) -> None:
    """Item 4 turned on fleetctl itself: with the monitor on (`nats.monitor_port`), a local
    user reads the inboxes of a running `task send --wait` (the publisher) and `status
    --watch` (the admin), and worker w2 aims every answer it can make the server send at
    them, and at their request subjects guessed blind. Both commands go on: the task's
    result is w1's, run once, and status keeps printing."""
    monitor = free_port()
    broker = f"\nhttp: 127.0.0.1:{monitor}\n"
    with task_fleet(tmp_path, {"w1": {}, "w2": {}}, broker_config=broker) as tf:
        n = tf.fleet.names
        run(_as_worker(tf, "w2", n.result("w2", "aimed"), b"{}"))

        async def stored_status() -> None:
            async with connect(tf.url, tf.fleet.workers["w2"], n.inbox_prefix("w2")) as w2:
                headers = {"Status": "409", "Description": "forged"}
                await w2.nc.jetstream().publish(n.result("w2", "status"), b"", headers=headers)

        run(stored_status())
        send = [FLEETCTL, "task", "send", directive(sleep=3, print="long"), "--to", "w1"]
        sender = subprocess.Popen(
            [*send, "--id", "long", "--wait", "--json"],
            env=tf.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watcher = subprocess.Popen(
            [FLEETCTL, "status", "--watch", "--json", "--no-hosts"],
            env=tf.env(admin=True),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            async def attack() -> list[str]:
                aimed: list[str] = []
                async with connect(tf.url, tf.fleet.workers["w2"], n.inbox_prefix("w2")) as w2:
                    deadline = time.monotonic() + 15
                    prefixes = (na.PUBLISHER_INBOX_PREFIX, na.ADMIN_INBOX_PREFIX)

                    def each_seen() -> bool:  # the publisher may hold several inboxes
                        return all(any(s.startswith(p) for s in aimed) for p in prefixes)

                    while time.monotonic() < deadline and not each_seen():
                        for prefix in prefixes:
                            for sub in _subscriptions(monitor, f"{prefix}."):
                                if sub not in aimed:
                                    aimed.append(sub)
                        await asyncio.sleep(0.05)
                    for sub in aimed:
                        target = sub.removesuffix("*")
                        for tail in ("", "x", "1", sub.rsplit(".", 2)[-2]):  # blind guesses
                            await _aim(w2, tf, target + tail if "*" in sub else sub)
                    for prefix in (na.PUBLISHER_INBOX_PREFIX, na.ADMIN_INBOX_PREFIX):
                        await _aim(w2, tf, f"{prefix}.x")
                    assert w2.violations() == []
                return aimed

            aimed = run(attack())
            assert any(s.startswith(na.PUBLISHER_INBOX_PREFIX) for s in aimed), aimed
            assert any(s.startswith(na.ADMIN_INBOX_PREFIX) for s in aimed), aimed
            out, err = sender.communicate(timeout=60)
            assert sender.returncode == 0, err
            [result] = json.loads(out)["results"]
            assert (result["worker_id"], result["status"], result["attempt"]) == (
                "w1",
                "completed",
                1,
            )
            assert [r["task_id"] for r in tf.runs("w1")] == ["long"]
            assert tf.runs("w2") == []
            assert watcher.stdout is not None
            lines = [watcher.stdout.readline() for _ in range(2)]  # it still prints
            assert all(json.loads(line)["version"] for line in lines), lines
            assert watcher.poll() is None
        finally:
            for proc in (sender, watcher):
                proc.terminate()
                proc.wait(10)
        assert "Traceback" not in (watcher.stderr.read() if watcher.stderr else "")


def test_fleetctls_own_connections_name_their_inboxes_at_random(tmp_path: Path) -> None:
    """The publisher's and the admin's connections (fleetctl/bus/client.py) take the
    poller's random inbox and request ids: with nats.py's own, one inbox the monitor shows
    (a batched read's, the request mux's) predicted the next ones, where a worker could
    aim a 404 that cuts a read short."""
    fleet = make_fleet(tmp_path, ("w1",))
    with fleet_server(fleet) as server:

        async def ids(user: str) -> list[str]:
            creds = fleet.publisher if user == na.PUBLISHER_USER else fleet.admin
            who = Identity(user, creds.creds_path, INBOX_PREFIXES[user])
            nc = await bus_client.connect(at(server.url, who))
            try:
                return [nc.new_inbox().split(".", 1)[1] for _ in range(50)]
            finally:
                await nc.close()

        for user in (na.PUBLISHER_USER, na.ADMIN_USER):
            found = run(ids(user))
            assert len({i[:12] for i in found}) == 50, found[:3]  # no shared NUID prefix
            assert {len(i) for i in found} == {22}


# ---- the publisher's creds: ids with other line separators ------------------------------

UNICODE_IDS = ("t1\u2028", "t1\u2029", "t1\x85", "t1\u00a0", "\uff54\uff11", "t\u0301")


def test_task_ids_with_unicode_separators_or_letters_are_refused_and_dead_lettered_once(
    tmp_path: Path,
) -> None:
    """Item 9's variation: ids are matched whole against ASCII, so a line or paragraph
    separator, NEL, a no-break space, full-width letters or a combining accent is refused
    by `task send` (exit 1, nothing published), and a task published by hand with one is
    dead-lettered by the poller on its first delivery without running its CLI."""
    with task_fleet(tmp_path, {"w1": {}}) as tf:
        for task_id in UNICODE_IDS:
            done = tf.fleetctl("task", "send", "hi", "--to", "w1", "--id", task_id)
            assert done.returncode == 1 and "Traceback" not in done.stderr, done
            assert done.stdout == "" and "task id" in done.stderr, done.stderr
        assert tf.stored_tasks() == 0

        async def publish() -> None:
            n = tf.fleet.names
            async with connect(tf.url, tf.fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub:
                for task_id in UNICODE_IDS:
                    body = {"task_id": task_id, "instructions": directive(print="ran")}
                    await pub.nc.jetstream().publish(n.inbox("w1"), json.dumps(body).encode())

        run(publish())

        def dead() -> list[dict[str, Any]]:
            return list(_json(tf, "dead", "list")["dead"])

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(dead()) < len(UNICODE_IDS):
            time.sleep(0.2)
        letters = dead()
        assert len(letters) == len(UNICODE_IDS) and {d["attempt"] for d in letters} == {1}
        assert {d["task_id"] for d in letters} == {None}, letters  # never echoed back
        assert {d["reason"] for d in letters} == {
            "task_id must be 1-128 letters, digits, '-' or '_'"
        }
        assert tf.runs("w1") == []
        poller = tf.pollers["w1"]
        assert poller.proc is not None and poller.proc.poll() is None


# ---- a worker's creds: what it writes to every spend key --------------------------------

CORRUPT_COUNTERS: list[tuple[bytes, str]] = [
    (b'{"usd": Infinity}', "usd is infinite"),
    (b'{"usd": -Infinity}', "usd is negative"),
    (b'{"usd": 1e999}', "usd is infinite"),
    (b'{"usd": -1e-300}', "usd is negative"),
    (b'{"usd": 1, "usd": NaN}', "usd is NaN"),  # a duplicate key: the last one counts
    (b'{"usd": true}', "usd is a bool, not a number"),
    (b'{"usd": null}', "no usd"),
    (b'{"usd": "1"}', "usd is a str, not a number"),
    (b"[1]", "a JSON list, not an object"),
    (b'{"usd": 1' + b"0" * 4000 + b"}", "usd is more than 1e+09"),  # a 4001-digit integer
    (b"\xff\xfe", "not JSON"),
]


def _check(tf: TaskFleet) -> tuple[int, dict[str, Any]]:
    shown = tf.fleetctl("status", "--check", "--json", "--no-hosts", admin=True)
    body: dict[str, Any] = json.loads(shown.stdout)
    return shown.returncode, body


async def _dropped(tf: TaskFleet, key: str, within: float) -> bool:
    """Has the broker dropped the spend counter `key` (expired) within `within` seconds?"""
    n = tf.fleet.names
    async with connect(tf.url, tf.fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
        js = admin.nc.jetstream()

        async def gone() -> bool:
            try:
                await js.get_msg(n.spend_stream, subject=f"$KV.{n.spend_bucket}.{key}", direct=True)
            except nats.js.errors.NotFoundError:
                return True
            return False

        return await wait_until(gone, within, step=0.1)


def test_whatever_a_worker_writes_to_a_spend_counter_status_check_says_or_counts(
    tmp_path: Path,
) -> None:
    """Item 11's variations, on the fleet's counter and on the worker's own (it has a budget
    of its own): every value that is not a finite amount from 0 to 1e9 is reported corrupt
    by `status --check` (exit 1), which reads counters with the pollers' rules. What stays
    the writer's word (docs/security.md, "Budgets"): a valid amount, 0 included (-0.0 is
    0), a key that expires (`Nats-TTL`, read as nothing spent), and a `reset` marker that
    names another worker as the one that reset it (shown as written when it has the
    poller's own shape; anything else is shown as unreadable)."""
    budget = {"daily_usd": 5.0}
    workers: dict[str, dict[str, Any]] = {
        "w1": {"llm": "claude-code", "budget": budget},
        "w2": {"llm": "claude-code"},
    }
    with task_fleet(tmp_path, workers, top={"budget": budget}) as tf:
        n = tf.fleet.names
        day = today()
        fleet_key, own_key = f"fleet.{day}", f"worker.w1.{day}"

        def write(key: str, data: bytes, **headers: str) -> None:
            async def go() -> None:
                async with connect(tf.url, tf.fleet.workers["w1"], n.inbox_prefix("w1")) as w1:
                    await w1.nc.jetstream().publish(
                        f"$KV.{n.spend_bucket}.{key}", data, headers=headers or None
                    )

            run(go())

        for data, why in CORRUPT_COUNTERS:
            for key, field in ((fleet_key, "fleet_spend_problem"), (own_key, None)):
                write(key, data)
                code, body = _check(tf)
                problem = f"is corrupt ({why})"
                if field is not None:
                    assert (code, body["broker"][field]) == (1, problem), (data, body)
                else:
                    [w1] = [w for w in body["workers"] if w["worker_id"] == "w1"]
                    assert (code, w1["spend_problem"]) == (1, problem), (data, w1)
                write(key, b'{"usd": 0}')
        assert _check(tf)[0] == 0
        with pytest.raises(nats.js.errors.BadRequestError, match="message size exceeds"):
            write(fleet_key, b'{"usd": 1' + b"0" * 5000 + b"}")  # too long to convert: 4 KiB

        write(fleet_key, b'{"usd": -0.0}')
        code, body = _check(tf)
        assert (code, body["broker"]["fleet_spent_today_usd"]) == (0, 0.0)

        # A key that expires (`Nats-TTL`) counts while it is there and as nothing once it is
        # gone. The broker, not the clock, says which: a check takes seconds on a loaded
        # machine, so the key it must read lives an hour, and the one it must not is
        # checked once the broker has dropped it.
        write(fleet_key, b'{"usd": 4.0}', **{"Nats-TTL": "1h"})
        assert _check(tf)[1]["broker"]["fleet_spent_today_usd"] == 4.0
        write(fleet_key, b'{"usd": 4.0}', **{"Nats-TTL": "1s"})
        assert run(_dropped(tf, fleet_key, within=30)), "the 1 s key is still there after 30 s"
        code, body = _check(tf)
        assert (code, body["broker"]["fleet_spent_today_usd"]) == (0, 0.0)  # as good as 0

        blamed = {"usd": 5.0, "reset": {"was": "usd is NaN", "by": "worker w2"}}
        write(fleet_key, json.dumps(blamed).encode())
        code, body = _check(tf)
        assert code == 1 and body["broker"]["fleet_spend_problem"] == (
            "was reset to its limit by worker w2 after it was found corrupt (usd is NaN)"
        )
        hostile = {"usd": 5.0, "reset": {"was": HOSTILE, "by": f"worker w2{HOSTILE}"}}
        write(fleet_key, json.dumps(hostile).encode())
        code, body = _check(tf)
        assert code == 1 and body["broker"]["fleet_spend_problem"] == (
            "was reset to its limit by an unknown poller after it was found corrupt (unreadable)"
        )
