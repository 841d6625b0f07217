"""Replies aimed at another worker's inboxes, as a compromised worker with its real creds.

nats-server checks a publisher's permission on the subject, never on the reply subject
(docs/security.md, "Replies aimed at another worker"). So worker w2 publishes on subjects of
its own (its results, its consumer, its status) with w1's inbox subjects as the reply
subjects, and the server sends w1 whatever answers: JetStream's PubAck, an API response,
direct-get responses (one carrying a forged `Status: 409` header, one a 404), a
no-responders status, pull answers of w2's own consumer (its task, then 408s). This crashed
w1's poller (`NotJSMessageError` in `join_if_running`) and its running task ran again.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fleetctl.bus.resources import worker_consumer
from fleetctl.identity import natsaccess as na
from tests.support.natsserver import free_port, running_nats_server
from tests.support.nscfleet import Conn, Fleet, connect, js_api, make_fleet
from tests.support.poller_harness import (
    Poller,
    directive,
    poller_env,
    run,
    standin_records,
    wait_until,
)

pytestmark = pytest.mark.integration


def subscriptions(monitor: int, name: str) -> list[str]:
    """A connection's subscriptions, as any local user reads them from the monitor port,
    newest first (the pull inbox is subscribed after nats.py's request inbox)."""
    url = f"http://127.0.0.1:{monitor}/connz?subs=detail"
    with urllib.request.urlopen(url, timeout=5) as r:
        connz = json.load(r)
    [conn] = [c for c in connz["connections"] if c.get("name") == name]
    subs = sorted(conn.get("subscriptions_list_detail") or [], key=lambda d: -int(d["sid"]))
    return [str(d["subject"]) for d in subs]


async def create_resources(fleet: Fleet, admin: Conn) -> None:
    """Streams, w1's consumer for two tasks at a time and w2's for one."""
    for s in fleet.stream_specs():
        await js_api(admin, f"$JS.API.STREAM.CREATE.{s.name}", s.api_config())
    for c in (worker_consumer(fleet.settings, "w1", 2), worker_consumer(fleet.settings, "w2", 1)):
        await js_api(
            admin,
            f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}",
            {"stream_name": c.stream, "config": c.api_config()},
        )


async def aim_replies(attacker: Conn, fleet: Fleet, target: str) -> None:
    """Everything w2 may publish that makes the server answer to `target`."""
    n, nc = fleet.names, attacker.nc
    direct = f"$JS.API.DIRECT.GET.{n.results_stream}"
    await nc.publish(n.result("w2", "aimed"), b"{}", reply=target)  # a PubAck
    await nc.flush()
    await asyncio.sleep(0.2)  # first on its own, as in the attack that crashed w1's poller
    await nc.publish(f"$JS.API.CONSUMER.INFO.{n.task_stream}.worker-w2", b"", reply=target)
    await nc.publish(f"{direct}.{n.result('w2', 'aimed')}", b"", reply=target)
    await nc.publish(f"{direct}.{n.result('w2', 'status')}", b"", reply=target)  # Status: 409
    await nc.publish(f"{direct}.{n.result('w2', 'nothing')}", b"", reply=target)  # a 404
    await nc.publish(n.status("w2"), b"{}", reply=target)  # no responders: a 503
    pull = {"batch": 1, "expires": 500_000_000}  # its own task, or a 408 half a second later
    next_w2 = f"$JS.API.CONSUMER.MSG.NEXT.{n.task_stream}.worker-w2"
    await nc.publish(next_w2, json.dumps(pull).encode(), reply=target)


def test_replies_aimed_at_a_workers_inboxes_are_dropped_and_its_task_runs_once(
    tmp_path: Path,
) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    work = tmp_path / "work"
    work.mkdir()
    broker = tmp_path / "broker"
    broker.mkdir()
    monitor = free_port()
    config = fleet.broker_config() + f"\nhttp: 127.0.0.1:{monitor}\n"
    with running_nats_server(broker, config) as server:

        async def go() -> None:
            n = fleet.names
            async with connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
                await create_resources(fleet, admin)
            creds = str(fleet.workers["w1"].creds_path)
            env = poller_env(server.url, "w1", work, NATS_CREDS=creds, CONCURRENCY="2")
            poller = Poller(env, work / "poller.log").start()
            try:
                async with (
                    connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
                    connect(server.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
                ):
                    await attack(pub, w2, poller)
            finally:
                poller.stop()

        async def attack(pub: Conn, w2: Conn, poller: Poller) -> None:
            n = fleet.names
            pjs, ajs = pub.nc.jetstream(), w2.nc.jetstream()
            await ajs.publish(n.result("w2", "aimed"), b"{}")
            await ajs.publish(
                n.result("w2", "status"), b"", headers={"Status": "409", "Description": "x"}
            )
            await pjs.publish(n.inbox("w2"), _task("stolen", "w2's task"))
            await pjs.publish(n.inbox("w1"), _task("long", directive(sleep=3, print="long")))

            def started() -> bool:
                return bool(standin_records(work, "start"))

            assert await wait_until(started, 20), poller.events()[-5:]
            await asyncio.sleep(0.3)  # the second slot's pull request waits at the server
            subs = subscriptions(monitor, "fleet-poller w1")
            inboxes = [s for s in subs if s.startswith(f"{n.inbox_prefix('w1')}.")]
            assert inboxes and n.ping("w1") in subs, subs
            for sub in [*inboxes, n.ping("w1")]:
                await aim_replies(w2, fleet, sub.removesuffix("*") + "aimed" if "*" in sub else sub)
            await w2.nc.flush()
            assert w2.violations() == []  # every one of them was within w2's permissions

            async def done(task_id: str) -> dict[str, Any] | None:
                try:
                    msg = await pjs.get_msg(n.results_stream, subject=n.result("w1", task_id))
                except Exception:
                    return None
                return dict(json.loads(msg.data or b"{}"))

            async def stored(task_id: str) -> bool:
                return await done(task_id) is not None

            assert await wait_until(lambda: stored("long"), 20), poller.events()[-8:]
            assert poller.proc is not None and poller.proc.poll() is None, "w1's poller died"
            await pjs.publish(n.inbox("w1"), _task("after", directive(print="after")))
            assert await wait_until(lambda: stored("after"), 20), poller.events()[-8:]
            long = await done("long")
            assert long is not None and (long["status"], long["attempt"]) == ("completed", 1)
            runs = [r["task_id"] for r in standin_records(work, "start")]
            assert runs == ["long", "after"]  # once each, and never w2's task

            async def counts() -> tuple[int, int, int]:
                info = await pjs.consumer_info(n.task_stream, "worker-w1")
                return (info.num_ack_pending, info.num_pending, info.num_redelivered)

            async def settled() -> bool:
                return await counts() == (0, 0, 0)

            # The result is stored before the ack: the ack may land a moment after.
            assert await wait_until(settled, 10), await counts()
            dropped = poller.logged("unexpected_message")
            assert dropped and all(d["consumer"] == "worker-w1" for d in dropped), dropped
            assert any(d["reply"].startswith("$JS.ACK.AF_TASKS.worker-w2.") for d in dropped)
            assert poller.logged("task_error") == [] and poller.logged("pull_failed") == []

        run(go())


def _task(task_id: str, instructions: str) -> bytes:
    return json.dumps({"task_id": task_id, "instructions": instructions}).encode()
