"""Observing the bus on a real nats-server: a stream near its limit is a plan warning."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import nats
import pytest

from fleetctl.bus.client import Identity, at
from fleetctl.identity import natsaccess as na
from fleetctl.reconcile import jetstream
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.plan.types import Change
from tests.support.nscfleet import fleet_server, make_fleet

pytestmark = pytest.mark.integration


def test_a_stream_near_its_limit_is_a_warning_of_the_observed_bus(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1",))
    tasks = replace(fleet.stream_specs()[0], max_bytes=64 * 1024)
    with fleet_server(fleet) as server:
        admin = at(server.url, Identity(na.ADMIN_USER, fleet.admin.creds_path, "_INBOX_ADMIN"))
        jetstream.apply(admin, [Change("create", "stream", tasks.name, None, resource=tasks)])
        bus = BusState((), (tasks,), (), (), tasks.name)
        assert jetstream.observe(admin, bus).warnings == ()

        async def fill() -> None:
            nc = await nats.connect(
                server.url,
                user_credentials=str(fleet.publisher.creds_path),
                inbox_prefix=na.PUBLISHER_INBOX_PREFIX,
            )
            js = nc.jetstream()
            for _ in range(60):  # ~60 KiB of the 64 KiB
                await js.publish(fleet.names.inbox("w1"), b"x" * 1000)
            await nc.close()

        asyncio.run(fill())
        (warning,) = jetstream.observe(admin, bus).warnings
        assert warning.startswith(f"stream {tasks.name} is at 9")
        assert "of its max bytes" in warning


def test_a_task_for_a_worker_outside_the_fleet_is_refused_by_the_server(tmp_path: Path) -> None:
    """The task stream takes the fleet's inboxes only: a raw publisher's task for a worker
    that is not an enabled worker of the fleet gets an error at once, not a queue."""
    from fleetctl.bus.resources import fleet_resources
    from fleetctl.config.schema import NatsSettings

    fleet = make_fleet(tmp_path, ("w1",))
    from fleetctl.bus.resources import StreamSpec

    tasks = fleet_resources(NatsSettings(), [("w1", 1)])[0]
    assert isinstance(tasks, StreamSpec)
    with fleet_server(fleet) as server:
        admin = at(server.url, Identity(na.ADMIN_USER, fleet.admin.creds_path, "_INBOX_ADMIN"))
        jetstream.apply(admin, [Change("create", "stream", tasks.name, None, resource=tasks)])

        async def publish(worker: str) -> object:
            nc = await nats.connect(
                server.url,
                user_credentials=str(fleet.publisher.creds_path),
                inbox_prefix=na.PUBLISHER_INBOX_PREFIX,
            )
            try:
                return await nc.jetstream().publish(fleet.names.inbox(worker), b"{}", timeout=2)
            finally:
                await nc.close()

        assert asyncio.run(publish("w1")).stream == tasks.name  # type: ignore[attr-defined]
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            asyncio.run(publish("gone"))
