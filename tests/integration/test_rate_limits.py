"""A rate-limited worker on a real nats-server, with real pollers and its stand-in CLI
answering as the real ones do on a 429 (docs/poller.md, "Rate limits and provider
outages"): its task is not failed and uses up no delivery, the worker fetches nothing until
the reset and says so, and its `pick: any` route's other member takes the queue meanwhile."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from fleetctl.tasks.client import Client
from tests.support.poller_harness import directive, run, stream_messages
from tests.support.taskfleet import task_fleet

pytestmark = pytest.mark.integration

CLAUDE = {"MODEL_BACKEND": "claude"}  # the stand-in claude: its stream-json shapes
WORKERS: dict[str, dict[str, Any]] = {
    "w1": {"lang": "go", "env": CLAUDE},
    "w2": {"lang": "go", "env": CLAUDE},
}
ROUTES = {"go": {"select": {"lang": "go"}, "pick": "any"}}


def test_a_limited_member_pauses_and_its_route_mate_takes_the_queue(tmp_path: Path) -> None:
    with task_fleet(tmp_path, WORKERS, ROUTES) as tf:
        creds = tf.fleet.publisher.creds_path
        limit = 12.0
        until = time.time() + limit
        # w1's provider refuses every call for 12 s, and says when it resets.
        task = directive(sleep=0.3, limited_until=until, retry_after=limit, limited_on=["w1"])
        with Client.open(tf.fleet_path, server=tf.url, creds=creds) as client:
            sents = [client.send(task, route="go") for _ in range(8)]
            results = client.wait(sents, timeout=60)
        assert [r.status for r in results] == ["completed"] * 8
        w1, w2 = tf.runs("w1"), tf.runs("w2")
        limited = [r for r in w1 if r["at"] < until]
        # w1 took one task, was refused, and fetched nothing more while paused; w2 ran the
        # rest, the refused task among them, at once.
        assert len(limited) == 1, w1
        assert len(w2) + len(w1) - 1 == 8
        assert {r.body["attempt"] for r in results} <= {1, 2}  # one delivery more, at most
        assert not any(r.status == "dead-lettered" for r in results)
        log = [json.loads(ln) for ln in (tf.dir / "work" / "w1" / "poller.log").open()]
        paused = [e for e in log if e.get("event") == "paused"]
        assert paused and paused[0]["reason"] == "rate limited" and paused[0]["reset_named"]
        # The reset is named as "in 12 s" by the run that was refused: it counts from then.
        assert abs(paused[0]["until"] - (limited[0]["at"] + limit)) < 2
        assert any(e.get("event") == "task_handed_back" for e in log)

        async def dead() -> int:
            import nats

            nc = await nats.connect(tf.url, user_credentials=str(tf.fleet.admin.creds_path))
            try:
                return len(await stream_messages(nc.jetstream(), "AF_DEAD"))
            except Exception:
                return 0
            finally:
                await nc.close()

        assert run(dead()) == 0


def test_status_says_a_worker_is_paused_and_until_when(tmp_path: Path) -> None:
    workers: dict[str, dict[str, Any]] = {"w1": {"env": CLAUDE}}
    with task_fleet(tmp_path, workers) as tf:
        until = time.time() + 300
        task = directive(limited_until=until, retry_after=300)
        sent = tf.fleetctl("task", "send", task, "--to", "w1", "--id", "rl-1")
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 20
        while True:
            shown = tf.fleetctl("status", "--json", admin=True)
            [w1] = json.loads(shown.stdout)["workers"]
            if w1["state"] == "paused" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (w1["state"], w1["pause_reason"]) == ("paused", "rate limited"), w1
        assert until <= w1["paused_until"] < until + 10  # "in 300 s", said when it ran
        text = tf.fleetctl("status", admin=True).stdout
        clock = time.strftime("%H:%M", time.localtime(w1["paused_until"]))
        assert f"paused: rate limited until {clock}" in text
        # Kept on its own worker (no route-mate): still running, no result, no failure.
        got = tf.fleetctl("results", "rl-1", "--json")
        [r] = json.loads(got.stdout)["results"]
        assert r["status"] == "running", r
