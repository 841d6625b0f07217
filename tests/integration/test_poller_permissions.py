"""The poller works with exactly the permissions docs/poller.md lists, and no more."""

from __future__ import annotations

import json
from pathlib import Path

import nats
import pytest

from tests.support.natsserver import running_nats_server
from tests.support.poller_harness import (
    Poller,
    poller_env,
    publish_task,
    run,
    setup_bus,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration

WORKER_PERMISSIONS = {
    "publish": {
        "allow": [
            "$JS.API.CONSUMER.INFO.AF_TASKS.worker-w1",
            "$JS.API.CONSUMER.MSG.NEXT.AF_TASKS.worker-w1",
            "$JS.ACK.AF_TASKS.worker-w1.>",
            "$JS.API.DIRECT.GET.AF_RESULTS.af.result.w1.*",
            "af.result.w1.*",
            "$KV.AF_LEASES.w1.>",
            "$JS.API.DIRECT.GET.KV_AF_LEASES.$KV.AF_LEASES.w1.>",
            "af.dead.w1",
            "af.worker.w1.status",
            "$KV.AF_SPEND.worker.w1.>",
            "$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.worker.w1.>",
            "$KV.AF_SPEND.fleet.>",
            "$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.fleet.>",
            "$JS.API.DIRECT.GET.KV_AF_CANCELS.$KV.AF_CANCELS.w1.*",
        ]
    },
    "subscribe": {"allow": ["_INBOX_w1.>", "af.worker.w1.ping", "$KV.AF_CANCELS.w1.*"]},
    "allow_responses": True,
}


def test_least_privilege_worker(tmp_path: Path) -> None:
    users = [
        {"user": "admin", "password": "admin"},
        {"user": "w1", "password": "w1pass", "permissions": WORKER_PERMISSIONS},
    ]
    extra = "accounts { FLEET { jetstream: enabled, users: " + json.dumps(users) + " } }\n"
    (tmp_path / "nats").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    with running_nats_server(tmp_path / "nats", extra) as server:
        admin_url = f"nats://admin:admin@127.0.0.1:{server.port}"
        worker_url = f"nats://w1:w1pass@127.0.0.1:{server.port}"

        async def go() -> None:
            await setup_bus(admin_url, "w1")
            poller = Poller(poller_env(worker_url, "w1", work), work / "poller.log").start()
            nc = await nats.connect(admin_url)
            js = nc.jetstream()
            try:
                await publish_task(js, "w1", {"task_id": "p1", "instructions": "hello"})
                await publish_task(js, "w1", b"not json")
                await publish_task(js, "w1", {"task_id": "p2"})  # rejected, id usable

                async def settled() -> bool:
                    return (
                        len(await stream_messages(js, "AF_RESULTS")) == 2
                        and len(await stream_messages(js, "AF_DEAD")) == 2
                    )

                assert await wait_until(settled, 15), poller.events()[-5:]
                # already stored: found by a direct get on its own subject, acked without running
                await publish_task(js, "w1", {"task_id": "p1", "instructions": "hello"})
                assert await wait_until(lambda: bool(poller.logged("already_done")), 10)
                reply = await nc.request("af.worker.w1.ping", b"", timeout=2)
                assert json.loads(reply.data)["worker_id"] == "w1"
                info = await js.stream_info("AF_TASKS")
                assert info.state.messages == 0
            finally:
                await nc.close()
                poller.stop()
            errors = [e for e in poller.events() if e.get("event") == "nats_error"]
            assert errors == [], errors

        run(go())
