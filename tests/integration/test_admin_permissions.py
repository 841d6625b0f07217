"""fleet-admin's permission matrix on a real broker: fleetctl's own JetStream requests work,
everything else a stolen admin creds file could try is refused by the server.

docs/security.md ("fleet-admin") cites these tests by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from fleetctl.bus.client import Endpoint, Identity, at
from fleetctl.bus.resources import ConsumerSpec, StreamSpec
from fleetctl.identity import natsaccess as na
from fleetctl.reconcile import jetstream
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Action, Change
from tests.support.example import example_fleet
from tests.support.nscfleet import DENIED_TIMEOUT, Conn, Fleet, connect, fleet_server, make_fleet

pytestmark = pytest.mark.integration
TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)
OK = 5.0


def _change(action: Action, spec: StreamSpec | ConsumerSpec) -> Change:
    kind, _, name = spec.key.partition(" ")
    return Change(action, kind, name, None, resource=spec)


def _changes(fleet: Fleet, action: Action) -> list[Change]:
    specs: list[StreamSpec | ConsumerSpec] = [*fleet.stream_specs(), *fleet.consumer_specs()]
    return [_change(action, s) for s in specs]


def _admin(url: str, creds: Path) -> Endpoint:
    return at(url, Identity(na.ADMIN_USER, creds, na.ADMIN_INBOX_PREFIX))


def _bus(fleet: Fleet, streams: list[StreamSpec], workers: list[ConsumerSpec]) -> BusState:
    consumers = tuple((c, c.durable) for c in workers)
    return BusState((), tuple(streams), consumers, (), fleet.names.task_stream)


def test_fleetctl_does_its_job_with_the_admin_creds(tmp_path: Path) -> None:
    """wait_ready, create, observe, update and delete: every request fleetctl's bus code
    (fleetctl/reconcile/jetstream.py) sends."""
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    creds = fleet.admin.creds_path
    with fleet_server(fleet) as server:
        admin = _admin(server.url, creds)
        assert jetstream.wait_ready(admin, 10)
        jetstream.apply(admin, _changes(fleet, "create"))
        streams = list(fleet.stream_specs())
        workers = [c for c in fleet.consumer_specs() if c.stream == fleet.names.task_stream]
        seen = jetstream.observe(admin, _bus(fleet, streams, workers))
        assert seen.reachable
        assert {s.key for s in streams} | {c.key for c in workers} <= seen.managed
        assert all(seen.resources[s.key] == s.api_config() for s in streams)
        updated = [replace(s, max_age=s.max_age + 1) for s in streams]
        jetstream.apply(admin, [_change("update", s) for s in updated])
        gone = workers[0]
        jetstream.apply(admin, [replace(_change("delete", gone), resource=None)])
        again = jetstream.observe(admin, _bus(fleet, updated, workers))
        assert gone.key not in again.resources
        assert all(again.resources[s.key] == s.api_config() for s in updated)


async def _refused(conn: Conn, subject: str, body: object) -> None:
    with pytest.raises(TIMEOUTS):
        await conn.nc.request(subject, json.dumps(body).encode(), timeout=DENIED_TIMEOUT)
    await conn.wait_violation(subject)


async def _server_says(conn: Conn, subject: str, body: object) -> str:
    reply = json.loads((await conn.nc.request(subject, json.dumps(body).encode(), OK)).data)
    return str((reply.get("error") or {}).get("description", "ok"))


def test_admin_is_refused_what_fleetctl_never_does(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    n = fleet.names
    tasks, results, dead = n.task_stream, n.results_stream, n.dead_stream
    with fleet_server(fleet) as server:
        jetstream.apply(_admin(server.url, fleet.admin.creds_path), _changes(fleet, "create"))

        async def go() -> None:
            async with (
                connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
            ):
                await pub.nc.jetstream().publish(n.inbox("w1"), b"queued task")
                push = {
                    "durable_name": "spy",
                    "deliver_subject": f"{na.ADMIN_INBOX_PREFIX}.spy",
                    "ack_policy": "explicit",
                    "filter_subject": n.inbox("w1"),
                }
                spy_stream = {
                    "name": "SPY",
                    "subjects": ["spy.>"],
                    "republish": {"src": "spy.>", "dest": n.inbox("w1")},
                }
                refused = {
                    # read queued tasks, results, dead letters
                    f"$JS.API.STREAM.MSG.GET.{tasks}": {"seq": 1},
                    f"$JS.API.DIRECT.GET.{tasks}": {"seq": 1},
                    f"$JS.API.DIRECT.GET.{results}.{n.all_results}": {},
                    f"$JS.API.STREAM.MSG.GET.{dead}": {"seq": 1},
                    # take tasks: pull, or an ephemeral / legacy / other-stream consumer
                    f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.{n.consumer('w1')}": {"batch": 1},
                    f"$JS.API.CONSUMER.CREATE.{tasks}": {"stream_name": tasks, "config": push},
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{tasks}.spy": {
                        "stream_name": tasks,
                        "config": push,
                    },
                    f"$JS.API.CONSUMER.CREATE.{tasks}.spy.{n.prefix}.>": {
                        "stream_name": tasks,
                        "config": push,
                    },
                    f"$JS.API.CONSUMER.CREATE.{dead}.spy": {"stream_name": dead, "config": {}},
                    f"$JS.API.CONSUMER.CREATE.{results}.spy": {
                        "stream_name": results,
                        "config": {},
                    },
                    # a stream of its own that republishes into a worker's inbox
                    "$JS.API.STREAM.CREATE.SPY": spy_stream,
                    # destroy or copy the fleet's streams
                    f"$JS.API.STREAM.DELETE.{tasks}": {},
                    f"$JS.API.STREAM.PURGE.{tasks}": {},
                    f"$JS.API.STREAM.MSG.DELETE.{results}": {"seq": 1},
                    f"$JS.API.STREAM.SNAPSHOT.{tasks}": {"deliver_subject": "_INBOX_ADMIN.s"},
                    "$JS.API.STREAM.LIST": {},
                    "$JS.API.STREAM.NAMES": {},
                    "$JS.API.ACCOUNT.PURGE.Services": {},
                }
                await asyncio.gather(*(_refused(admin, s, b) for s, b in refused.items()))
                # core publishes: no tasks, no acks
                for subject in (n.inbox("w1"), f"$JS.ACK.{tasks}.{n.consumer('w1')}.1.1.1.1.0"):
                    await admin.nc.publish(subject, b"x")
                    await admin.wait_violation(subject)

                # Allowed, but the server refuses a consumer that would take w1's tasks:
                # the task stream is a work queue, one consumer per filter; pull stays pull.
                create = f"$JS.API.CONSUMER.CREATE.{tasks}"
                body = {"stream_name": tasks, "config": push}
                assert "not unique" in await _server_says(admin, f"{create}.spy", body)
                to_push = {**push, "durable_name": n.consumer("w1")}
                body = {"stream_name": tasks, "config": to_push, "action": "update"}
                said = await _server_says(admin, f"{create}.{n.consumer('w1')}", body)
                assert "pull consumer to push" in said
                info = await admin.nc.jetstream().stream_info(tasks)
                assert info.state.messages == 1  # the queued task is still there, unread

        asyncio.run(go())


def test_streams_of_the_previous_shape_are_updated_in_place(tmp_path: Path) -> None:
    """An existing broker (shared result subject, no bounds) takes the new declarations as
    updates, with the admin's permissions: apply needs no stream to be deleted."""
    fleet = make_fleet(tmp_path, ("w1",))
    creds = fleet.admin.creds_path
    new = fleet.stream_specs()
    old = [
        replace(
            s,
            subjects=("af.task.*.completed",)
            if s.name == fleet.names.results_stream
            else s.subjects,
            max_bytes=-1,
            discard="old",
            max_msgs_per_subject=-1,
            allow_direct=False,
        )
        for s in new
    ]
    with fleet_server(fleet) as server:
        admin = _admin(server.url, creds)
        jetstream.apply(admin, [_change("create", s) for s in old])
        jetstream.apply(admin, [_change("update", s) for s in new])
        seen = jetstream.observe(admin, _bus(fleet, list(new), []))
        assert all(seen.resources[s.key] == s.api_config() for s in new)


def test_what_admin_can_still_do_replace_a_consumer_with_a_push_one(tmp_path: Path) -> None:
    """The residual docs/security.md states: a consumer's deliver subject is in the request
    body, which permissions cannot see, so admin can delete a worker's consumer and create
    one of the same name that pushes that worker's queued tasks to its own inbox. If this
    ever fails, the server closed it: update docs/security.md."""
    fleet = make_fleet(tmp_path, ("w1",))
    n = fleet.names
    tasks = n.task_stream
    [n_consumer_w1] = [c.api_config() for c in fleet.consumer_specs() if c.stream == tasks]
    with fleet_server(fleet) as server:
        jetstream.apply(_admin(server.url, fleet.admin.creds_path), _changes(fleet, "create"))

        async def go() -> list[bytes]:
            async with (
                connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
            ):
                await pub.nc.jetstream().publish(n.inbox("w1"), b"queued task")
                got: list[bytes] = []

                async def on_msg(msg: Any) -> None:
                    got.append(msg.data)

                await admin.nc.subscribe(f"{na.ADMIN_INBOX_PREFIX}.spy", cb=on_msg)
                durable = n.consumer("w1")
                deleted = await _server_says(
                    admin, f"$JS.API.CONSUMER.DELETE.{tasks}.{durable}", {}
                )
                push = {  # the declared config, to look like it, and a deliver subject
                    **n_consumer_w1,
                    "deliver_subject": f"{na.ADMIN_INBOX_PREFIX}.spy",
                }
                body = {"stream_name": tasks, "config": push}
                created = await _server_says(
                    admin, f"$JS.API.CONSUMER.CREATE.{tasks}.{durable}", body
                )
                assert (deleted, created) == ("ok", "ok")
                for _ in range(50):
                    if got:
                        break
                    await asyncio.sleep(0.05)
                return got

        assert asyncio.run(go()) == [b"queued task"]
        # The next plan shows it (a deliver subject is never declared), and apply replaces it
        # with the declared pull consumer (no update turns a push consumer into one).
        endpoint = _admin(server.url, fleet.admin.creds_path)
        workers = [c for c in fleet.consumer_specs() if c.stream == tasks]
        bus = _bus(fleet, fleet.stream_specs(), workers)
        [via] = [h for h in example_fleet().hosts if h.name == "broker-host"]
        found = diff_bus(bus, jetstream.observe(endpoint, bus), Selection(), via)
        assert found is not None
        assert [(c.action, c.name) for c in found.changes] == [("update", f"{tasks}/worker-w1")]
        jetstream.apply(endpoint, found.changes)
        again = diff_bus(bus, jetstream.observe(endpoint, bus), Selection(), via)
        assert again is not None and again.changes == ()


def test_what_admin_can_still_do_to_stream_configs_shows_in_the_next_plan(
    tmp_path: Path,
) -> None:
    """The other half of that residual: with `STREAM.UPDATE` a stolen admin creds file can
    make the results stream republish every new result to its own inbox, feed another
    worker's results into w1's task queue (a source with a subject transform), capture its
    own ping subject into w1's queue (it may publish pings: so it queues a task of its
    choosing), and allow rollups on the results stream. None of these is a setting fleetctl
    declares, so none showed in a plan: the backdoor stayed. Now the next plan shows each
    stream as an update, and apply puts the declared config back, which ends them all."""
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    n = fleet.names
    tasks, results = n.task_stream, n.results_stream
    streams = fleet.stream_specs()
    bus = _bus(fleet, streams, [c for c in fleet.consumer_specs() if c.stream == tasks])
    declared = {s.name: s.api_config() for s in streams}
    spy = f"{na.ADMIN_INBOX_PREFIX}.spy"
    with fleet_server(fleet) as server:
        endpoint = _admin(server.url, fleet.admin.creds_path)
        jetstream.apply(endpoint, _changes(fleet, "create"))
        [via] = [h for h in example_fleet().hosts if h.name == "broker-host"]

        def plan() -> list[tuple[str, str]]:
            found = diff_bus(bus, jetstream.observe(endpoint, bus), Selection(), via)
            assert found is not None
            return [(c.action, c.name) for c in found.changes]

        assert plan() == []
        backdoors = {
            results: declared[results]
            | {"republish": {"src": ">", "dest": f"{spy}.>"}, "allow_rollup_hdrs": True},
            tasks: declared[tasks]
            | {
                "sources": [
                    {
                        "name": results,
                        "subject_transforms": [{"src": n.result("w2", "*"), "dest": n.inbox("w1")}],
                    }
                ],
                "subjects": [*declared[tasks]["subjects"], n.ping("w1")],
                "subject_transform": {"src": n.ping("w1"), "dest": n.inbox("w1")},
            },
        }

        async def open_backdoors() -> list[str]:
            async with connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
                return [await _server_says(admin, f"$JS.API.STREAM.UPDATE.{s}", body)
                        for s, body in backdoors.items()]  # fmt: skip

        async def use_backdoors() -> tuple[list[str], int, str]:
            """What the admin sees of the next results, how many tasks wait for w1 after w2
            stores a result and the admin sends a ping, and what a rollup on w2's own result
            subject says."""
            async with (
                connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                connect(server.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
                connect(server.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
            ):
                seen: list[str] = []

                async def on_msg(msg: Any) -> None:
                    seen.append(msg.subject)

                await admin.nc.subscribe(f"{spy}.>", cb=on_msg)
                await admin.nc.flush()
                await w1.nc.jetstream().publish(n.result("w1", "t1"), b"w1's result")
                await w2.nc.jetstream().publish(n.result("w2", "x"), b'{"task_id": "x"}')
                with contextlib.suppress(*TIMEOUTS, nats.errors.NoRespondersError):
                    await admin.nc.request(n.ping("w1"), b'{"task_id": "a"}', timeout=0.5)
                # Sourcing is asynchronous, and the rollup below would purge x before its copy
                # if it came first: let the copies land, then roll up.
                await queued_for_w1(admin, 2)
                try:
                    await w2.nc.jetstream().publish(
                        n.result("w2", "y"), b"{}", headers={"Nats-Rollup": "all"}
                    )
                    rollup = "stored"
                except nats.js.errors.APIError as e:
                    rollup = str(e.description)
                await asyncio.sleep(0.5)
                return seen, await queued_for_w1(admin, 3), rollup

        async def queued_for_w1(admin: Conn, at_least: int) -> int:
            """How many tasks wait for w1, once at least `at_least` do (or after 5 s)."""
            for _ in range(50):
                info = await admin.nc.jetstream().consumer_info(tasks, n.consumer("w1"))
                if info.num_pending >= at_least:
                    break
                await asyncio.sleep(0.1)
            return int(info.num_pending)

        assert asyncio.run(open_backdoors()) == ["ok", "ok"]
        assert plan() == [("update", tasks), ("update", results)]
        seen, queued, rollup = asyncio.run(use_backdoors())
        assert seen == [
            f"{spy}.{n.result(w, t)}" for w, t in (("w1", "t1"), ("w2", "x"), ("w2", "y"))
        ]
        assert (queued, rollup) == (3, "stored")  # w2's results and a ping as w1's tasks

        found = diff_bus(bus, jetstream.observe(endpoint, bus), Selection(), via)
        assert found is not None
        jetstream.apply(endpoint, found.changes)
        assert plan() == []
        seen, queued, rollup = asyncio.run(use_backdoors())
        assert (seen, queued, rollup) == ([], 3, "rollup not permitted")  # the first three stay
