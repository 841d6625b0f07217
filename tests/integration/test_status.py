"""`fleetctl status` on a real broker with real pollers (stand-in CLIs), read as fleet-admin
with its least-privilege creds, the way an operator's cron job would."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fleetctl.identity.natsaccess import PUBLISHER_INBOX_PREFIX
from fleetctl.status.report import DEFAULT_HEARTBEAT_INTERVAL as HEARTBEAT_INTERVAL
from tests.support.nscfleet import connect
from tests.support.poller_harness import directive
from tests.support.taskfleet import FLEETCTL, TaskFleet, task_fleet

pytestmark = pytest.mark.integration

WORKERS: dict[str, dict[str, Any]] = {
    "w1": {"labels": {"team": "a"}},
    "w2": {},
    "w3": {"enabled": False},
}


def status(tf: TaskFleet, *args: str) -> tuple[int, dict[str, Any]]:
    done = tf.fleetctl("status", "--json", "--no-hosts", *args, admin=True)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["worker_id"]: w for w in body["workers"]}


def test_a_stopped_worker_a_backlog_and_a_dead_letter_each_need_a_human(tmp_path: Path) -> None:
    with task_fleet(tmp_path, WORKERS, top={"status": {"max_lag": 2}}) as tf:
        rc, body = status(tf, "--check")
        assert rc == 0, body["problems"]
        workers = by_id(body)
        assert {w: s["state"] for w, s in workers.items()} == {
            "w1": "idle",
            "w2": "idle",
            "w3": "disabled",
        }
        assert workers["w1"]["heartbeat_age_s"] < HEARTBEAT_INTERVAL
        assert workers["w1"]["labels"] == {"team": "a"} and workers["w1"]["version"]
        assert body["problems"] == [] and body["version"] == 1
        assert body["broker"]["server_version"] and body["broker"]["reachable"]
        # Stopped: its last status says so and it answers no ping.
        tf.pollers["w2"].stop()
        stopped = time.monotonic()
        rc, body = status(tf, "--check")
        assert time.monotonic() - stopped < 2 * HEARTBEAT_INTERVAL
        assert rc == 1 and by_id(body)["w2"]["state"] == "not heartbeating"
        assert body["problems"] == ["worker w2: not heartbeating"]
        # Its tasks pile up: three queued is over max_lag 2.
        for n in range(3):
            sent = tf.fleetctl("task", "send", directive(print="x"), "--to", "w2", "--id", f"q{n}")
            assert sent.returncode == 0, sent.stderr
        rc, body = status(tf)
        assert rc == 0  # without --check, problems are shown, not an exit code
        w2 = by_id(body)["w2"]
        assert (w2["pending"], w2["ack_pending"], w2["redelivered"]) == (3, 0, 0)
        assert "worker w2: 3 tasks queued (status.max_lag 2)" in body["problems"]
        # A dead letter (a task that is not JSON) is new once.
        asyncio.run(_publish_raw(tf, "w1", b"not json"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _dead(tf):
            time.sleep(0.1)
        _, body = status(tf)
        assert body["broker"]["new_dead_letters"] == 1
        assert (
            "broker: 1 new dead letter(s) since the last look (fleetctl dead list)"
            in (body["problems"])
        )
        _, body = status(tf)
        assert body["broker"]["new_dead_letters"] == 0 and body["broker"]["dead_letters"] == 1
        assert by_id(body)["w1"]["failed"] == 1  # the rejected task, from its heartbeat
        assert by_id(body)["w1"]["completed"] == 0


async def _publish_raw(tf: TaskFleet, worker: str, data: bytes) -> None:
    async with connect(tf.url, tf.fleet.publisher, PUBLISHER_INBOX_PREFIX) as pub:
        await pub.nc.jetstream().publish(tf.fleet.names.inbox(worker), data)


def _dead(tf: TaskFleet) -> list[dict[str, Any]]:
    dead: list[dict[str, Any]] = json.loads(tf.fleetctl("dead", "list", "--json").stdout)["dead"]
    return dead


def test_watch_sees_a_hung_worker_within_two_heartbeats(tmp_path: Path) -> None:
    """SIGSTOP: the poller neither beats nor answers pings; --watch turns it red once two of
    its own heartbeat intervals passed without one, from the heartbeats alone. Judged by
    the watch's own lines, not by how long it took: each says the age of w2's last
    heartbeat (by the watch's clock, at the time it judged), and w2 is idle on every line
    whose age is within two intervals and not heartbeating on the first past them (the
    watch prints at least once a second). w1 beats every 5 s: judged by its own interval,
    it stays idle meanwhile, though its last heartbeat may be older than w2's limit."""
    workers: dict[str, dict[str, Any]] = {"w1": {"env": {"HEARTBEAT_INTERVAL": "5"}}, "w2": {}}
    with task_fleet(tmp_path, workers) as tf:
        watch = subprocess.Popen(
            [FLEETCTL, "status", "--watch", "--json", "--no-hosts"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=tf.env(admin=True),
        )
        try:
            assert watch.stdout is not None
            w2 = by_id(json.loads(watch.stdout.readline()))["w2"]
            assert w2["state"] == "idle"
            # Its own interval, as its heartbeat says: the poller harness's 0.5 s, not the
            # default 5 s the watch would assume for a poller that does not say.
            assert w2["heartbeat_interval_s"] == 0.5
            limit = 2 * w2["heartbeat_interval_s"]
            tf.pollers["w2"].signal(signal.SIGSTOP)
            seen: list[tuple[float, str]] = []  # w2's (heartbeat age, state), line by line
            given_up = time.monotonic() + 60  # only against a watch that hangs
            while time.monotonic() < given_up:
                body = json.loads(watch.stdout.readline())
                w2 = by_id(body)["w2"]
                seen.append((w2["heartbeat_age_s"], w2["state"]))
                assert by_id(body)["w1"]["state"] == "idle", body
                if w2["state"] != "idle" or w2["heartbeat_age_s"] > limit:
                    break
            *before, turned = seen
            assert all(state == "idle" and age <= limit for age, state in before), seen
            assert turned[1] == "not heartbeating" and turned[0] > limit, seen
            [problem] = body["problems"]
            assert problem.startswith("worker w2: not heartbeating (last heard ")
        finally:
            tf.pollers["w2"].signal(signal.SIGCONT)
            watch.terminate()
            watch.wait(10)
