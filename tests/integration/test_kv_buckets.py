"""The KV buckets (task leases, spend counters) against a worker's own credentials on a real
broker: a rollup on a key it may write purges nothing, and buckets made before this shape are
brought to it by the plan."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest

from fleetctl.bus.client import Identity, at
from fleetctl.bus.resources import StreamSpec
from fleetctl.identity import natsaccess as na
from fleetctl.reconcile import jetstream
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.selection import Selection
from poller.budget import Budget, Limits, today
from poller.lease import Lease
from tests.support.example import example_fleet
from tests.support.nscfleet import Conn, Fleet, connect, create_resources, fleet_server, make_fleet
from tests.support.poller_harness import worker_leases

pytestmark = pytest.mark.integration

ROLLUPS = ("all", "sub")


def _budget(fleet: Fleet, worker_id: str, conn: Conn) -> Budget:
    limits = Limits(daily_usd=10.0, fleet_daily_usd=10.0)
    return Budget(conn.nc.jetstream(), fleet.names.spend_bucket, worker_id, limits)


async def _key(conn: Conn, stream: str, subject: str) -> tuple[int, bytes]:
    """(sequence, value) of one key, read with the credentials of a worker allowed to."""
    msg = await conn.nc.jetstream().get_msg(stream, subject=subject, direct=True)
    return int(msg.seq or 0), bytes(msg.data or b"")


async def _stream_state(admin: Conn, stream: str) -> dict[str, Any]:
    """Messages, sequences and the count on every subject, as the admin sees them."""
    reply = await admin.nc.request(
        f"$JS.API.STREAM.INFO.{stream}", json.dumps({"subjects_filter": ">"}).encode(), timeout=5
    )
    info: dict[str, Any] = json.loads(reply.data)
    state = info["state"]
    return {k: state.get(k) for k in ("messages", "first_seq", "last_seq", "subjects")}


def test_a_workers_rollup_on_its_own_keys_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """Worker w1 publishes `Nats-Rollup: all` and `sub` on its own lease, its own spend counter
    and the fleet's (keys its credentials may write): each is refused, and no key of the two
    buckets changes, w2's lease and counter and the fleet's counter included. Then leases and
    spend go on working: compare-and-set refreshes, a release, a take, an add."""
    asyncio.run(_rollups_refused(tmp_path))


async def _rollups_refused(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    n = fleet.names
    spend, bucket = n.spend_stream, n.spend_bucket
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
            connect(srv.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
        ):
            await create_resources(fleet, admin)
            mine = worker_leases("w1", w1.nc.jetstream(), tmp_path)
            theirs = worker_leases("w2", w2.nc.jetstream(), tmp_path)
            my_lease, their_lease = await mine.take("t1", 3), await theirs.take("t1", 7)
            assert isinstance(my_lease, Lease) and isinstance(their_lease, Lease)
            await _budget(fleet, "w1", w1).add(0.25)
            await _budget(fleet, "w2", w2).add(0.5)

            day = today()
            keys = {  # each key, and who may read it
                theirs.subject("t1"): (w2, n.lease_stream),
                mine.subject("t1"): (w1, n.lease_stream),
                f"$KV.{bucket}.worker.w2.{day}": (w2, spend),
                f"$KV.{bucket}.worker.w1.{day}": (w1, spend),
                f"$KV.{bucket}.fleet.{day}": (w1, spend),
            }

            async def snapshot() -> dict[str, Any]:
                values = {k: await _key(c, s, k) for k, (c, s) in keys.items()}
                streams = {s: await _stream_state(admin, s) for s in (n.lease_stream, spend)}
                return values | streams

            before = await snapshot()
            assert json.loads(before[f"$KV.{bucket}.fleet.{day}"][1])["usd"] == 0.75

            js = w1.nc.jetstream()
            own = (mine.subject("t1"), f"$KV.{bucket}.worker.w1.{day}", f"$KV.{bucket}.fleet.{day}")
            for subject in own:
                stream = spend if subject.startswith(f"$KV.{bucket}.") else n.lease_stream
                for rollup in ROLLUPS:
                    with pytest.raises(nats.js.errors.APIError) as refused:
                        await js.publish(
                            subject, b"{}", stream=stream, headers={"Nats-Rollup": rollup}
                        )
                    assert refused.value.description == "rollup not permitted"
                # what `nats kv purge` sends
                with pytest.raises(nats.js.errors.APIError, match="rollup not permitted"):
                    purge = {"KV-Operation": "PURGE", "Nats-Rollup": "sub"}
                    await js.publish(subject, b"", stream=stream, headers=purge)
            assert await snapshot() == before
            assert w1.violations() == []  # refused by the bucket, not by permissions

            for info in [await _stream_info(admin, s) for s in (n.lease_stream, spend)]:
                config = info["config"]
                assert (config["allow_rollup_hdrs"], config["deny_purge"]) == (False, True)

            # Leases and spend keep working: each write expects the last one it made.
            assert await theirs.refresh(their_lease, 7)
            assert await mine.refresh(my_lease, 3)
            await mine.release(my_lease)
            assert isinstance(await mine.take("t1", 5), Lease)
            await _budget(fleet, "w1", w1).add(0.25)
            _, fleet_spend = await _key(w1, spend, f"$KV.{bucket}.fleet.{day}")
            assert json.loads(fleet_spend)["usd"] == 1.0
            assert admin.errors == [] and w2.errors == []


async def _stream_info(admin: Conn, stream: str) -> dict[str, Any]:
    reply = await admin.nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
    info: dict[str, Any] = json.loads(reply.data)
    return info


def test_buckets_made_with_rollups_are_updated_by_the_plan(tmp_path: Path) -> None:
    """A broker whose buckets were made by an earlier fleetctl (rollups allowed, purge not
    denied): the plan updates exactly the two buckets, apply makes them refuse a rollup, their
    keys survive, and the next plan has nothing to do. From then on not even the admin's
    creds can make a bucket purgeable again: nats-server refuses that update."""
    fleet = make_fleet(tmp_path, ("w1",))
    n = fleet.names
    specs = fleet.stream_specs()
    buckets = [s for s in specs if s.name.startswith("KV_")]
    bus = BusState(("broker",), tuple(specs), consumer_stream=n.task_stream)
    [via] = [h for h in example_fleet().hosts if h.name == "broker-host"]

    with fleet_server(fleet) as srv:
        endpoint = at(srv.url, Identity(na.ADMIN_USER, fleet.admin.creds_path, "_INBOX_ADMIN"))
        asyncio.run(_make_old_buckets(fleet, srv.url, specs))
        plan = diff_bus(bus, jetstream.observe(endpoint, bus), Selection(), via)
        assert plan is not None
        assert [(c.action, c.name) for c in plan.changes] == [("update", s.name) for s in buckets]
        jetstream.apply(endpoint, plan.changes)
        again = diff_bus(bus, jetstream.observe(endpoint, bus), Selection(), via)
        assert again is not None and again.changes == ()
        asyncio.run(_old_key_kept_and_rollup_refused(fleet, srv.url))
        asyncio.run(_no_way_back(fleet, srv.url, buckets))


async def _make_old_buckets(fleet: Fleet, url: str, specs: list[StreamSpec]) -> None:
    n = fleet.names
    async with (
        connect(url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
        connect(url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
    ):
        for s in specs:
            config = s.api_config()
            if s.kv_bucket:  # what fleetctl declared before
                config |= {"allow_rollup_hdrs": True, "deny_purge": False}
            reply = await admin.nc.request(
                f"$JS.API.STREAM.CREATE.{s.name}", json.dumps(config).encode(), timeout=5
            )
            assert "error" not in json.loads(reply.data), reply.data
        key = f"$KV.{n.spend_bucket}.fleet.{today()}"
        await w1.nc.jetstream().publish(key, b'{"usd": 2.5}', stream=n.spend_stream)


async def _old_key_kept_and_rollup_refused(fleet: Fleet, url: str) -> None:
    n = fleet.names
    key = f"$KV.{n.spend_bucket}.fleet.{today()}"
    async with connect(url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1:
        _, value = await _key(w1, n.spend_stream, key)
        assert json.loads(value) == {"usd": 2.5}
        with pytest.raises(nats.js.errors.APIError, match="rollup not permitted"):
            await w1.nc.jetstream().publish(
                key, b"{}", stream=n.spend_stream, headers={"Nats-Rollup": "all"}
            )
        assert json.loads((await _key(w1, n.spend_stream, key))[1]) == {"usd": 2.5}


async def _no_way_back(fleet: Fleet, url: str, buckets: list[StreamSpec]) -> None:
    async with connect(url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
        for s in buckets:
            for loosened, error in (
                ({"allow_rollup_hdrs": True}, "roll-ups require the purge permission"),
                ({"allow_rollup_hdrs": True, "deny_purge": False}, "can not cancel deny purge"),
                ({"deny_purge": False}, "can not cancel deny purge"),
            ):
                body = json.dumps(s.api_config() | loosened).encode()
                reply = await admin.nc.request(f"$JS.API.STREAM.UPDATE.{s.name}", body, timeout=5)
                assert error in json.loads(reply.data)["error"]["description"], reply.data
