"""Draining a departing worker's queue on a real, credentialed bus (tests/support/nscfleet.py):
done as that worker with its own creds, its queued tasks become its dead letters and leave
its queue; another worker's tasks stay; another worker's creds move nothing."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import nats
import pytest

from fleetctl.bus import taskbus
from fleetctl.bus.client import at
from fleetctl.identity import natsaccess as na
from fleetctl.reconcile import drain
from tests.support.nscfleet import Fleet, connect, create_resources, fleet_server, make_fleet

pytestmark = pytest.mark.integration


async def prepare(fleet: Fleet, url: str, tasks: dict[str, list[str]]) -> None:
    """The fleet's streams and consumers, and each worker's queued tasks (by task id)."""
    async with connect(url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
        await create_resources(fleet, admin)
    nc = await nats.connect(
        url,
        user_credentials=str(fleet.publisher.creds_path),
        inbox_prefix=na.PUBLISHER_INBOX_PREFIX,
    )
    try:
        for worker, ids in tasks.items():
            for task_id in ids:
                body = json.dumps({"task_id": task_id, "prompt": f"do {task_id}"}).encode()
                await taskbus.publish(nc, fleet.names.inbox(worker), body, task_id)
    finally:
        await nc.close()


async def look(fleet: Fleet, url: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """As the publisher: w1's dead letters, and how many tasks wait on each consumer."""
    nc = await nats.connect(
        url,
        user_credentials=str(fleet.publisher.creds_path),
        inbox_prefix=na.PUBLISHER_INBOX_PREFIX,
    )
    try:
        names = fleet.names
        dead = await taskbus.scan(nc, names.dead_stream, names.dead("w1"))
        waiting = {}
        for worker in fleet.workers:
            info = await taskbus.consumer_info(nc, names.task_stream, names.consumer(worker))
            assert info is not None
            waiting[worker] = info["num_pending"] + info["num_ack_pending"]
        return [json.loads(m.data) for m in dead], waiting
    finally:
        await nc.close()


def test_a_departing_workers_queued_tasks_become_its_dead_letters(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    with fleet_server(fleet) as server:
        asyncio.run(prepare(fleet, server.url, {"w2": ["t-0"], "w1": ["t-1", "t-2", "t-3"]}))
        as_w1 = at(server.url, drain.identity_of("w1", fleet.workers["w1"].creds_path))
        assert drain.drain(as_w1, fleet.names.prefix, "w1") == 3
        dead, waiting = asyncio.run(look(fleet, server.url))
        assert waiting == {"w1": 0, "w2": 1}
        assert [(d["task_id"], d["worker_id"], d["stream_seq"], d["attempt"]) for d in dead] == [
            ("t-1", "w1", 2, 1),  # its place in the task stream, after w2's task
            ("t-2", "w1", 3, 1),
            ("t-3", "w1", 4, 1),
        ]
        assert all(d["reason"] == drain.REASON for d in dead)
        task = json.loads(base64.b64decode(dead[0]["task_b64"]))
        assert task == {"task_id": "t-1", "prompt": "do t-1"}
        assert drain.drain(as_w1, fleet.names.prefix, "w1") == 0  # nothing left: nothing again


def test_another_workers_creds_move_nothing(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    with fleet_server(fleet) as server:
        asyncio.run(prepare(fleet, server.url, {"w1": ["t-1", "t-2"]}))
        as_w2 = at(server.url, drain.identity_of("w2", fleet.workers["w2"].creds_path))
        assert drain.drain(as_w2, fleet.names.prefix, "w1") == 0
        dead, waiting = asyncio.run(look(fleet, server.url))
        assert (dead, waiting) == ([], {"w1": 2, "w2": 0})
