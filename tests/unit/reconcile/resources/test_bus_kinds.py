"""Each bus resource kind as one class: its key, fingerprint and description, the JetStream
API request that observes it and how the reply reads, and the exact request that makes,
updates or deletes it. The bus client is a fake here; tests/integration/test_bus_observe.py
runs the same code against a real nats-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleetctl.bus.resources import ConsumerSpec, StreamSpec, worker_consumer
from fleetctl.config.schema import NatsSettings
from fleetctl.reconcile import jetstream
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.changes import change
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Change
from fleetctl.reconcile.resources.kinds import BUS_KINDS, JETSTREAM_KINDS
from fleetctl.reconcile.resources.revocations import RevocationSpec
from tests.support.example import example_fleet

RESULTS = StreamSpec("AF_RESULTS", ("af.result.*.*",), "limits", 3600, 60, 1024)
W1 = worker_consumer(NatsSettings(), "w1", 2)


def test_a_stream_is_shown_fingerprinted_and_requested_as_data() -> None:
    assert (RESULTS.key, RESULTS.fingerprint()) == ("stream AF_RESULTS", RESULTS.api_config())
    assert RESULTS.describe() == (
        "AF_RESULTS",
        (("subjects", "af.result.*.*"), ("retention", "limits")),
    )
    assert RESULTS.info_request() == ("$JS.API.STREAM.INFO.AF_RESULTS", None)
    create = change("create", RESULTS, None, None)
    assert jetstream.request_for(create) == (
        "$JS.API.STREAM.CREATE.AF_RESULTS",
        RESULTS.api_config(),
    )
    update = change("update", RESULTS, None, None)
    assert jetstream.request_for(update)[0] == "$JS.API.STREAM.UPDATE.AF_RESULTS"
    delete = Change("delete", "stream", "OLD", None)
    assert jetstream.request_for(delete) == ("$JS.API.STREAM.DELETE.OLD", None)


def test_a_stream_read_from_the_server_shows_a_setting_fleetctl_never_declares() -> None:
    server = RESULTS.api_config() | {"first_seq": 1, "republish": {"src": ">", "dest": "x"}}
    seen = RESULTS.read({"config": server, "state": {}})
    assert seen == RESULTS.api_config() | {"republish": {"src": ">", "dest": "x"}}
    assert RESULTS.read({"config": RESULTS.api_config() | {"first_seq": 1}}) == (
        RESULTS.fingerprint()
    )


def test_a_consumer_is_shown_fingerprinted_and_requested_as_data() -> None:
    assert W1.key == "consumer AF_TASKS/worker-w1"
    assert W1.describe() == (
        "AF_TASKS/worker-w1",
        (("filter", "af.worker.w1.inbox"), ("ack_wait", "60s")),
    )
    assert ConsumerSpec.list_request("AF_TASKS", 256) == (
        "$JS.API.CONSUMER.LIST.AF_TASKS",
        {"offset": 256},
    )
    assert jetstream.request_for(change("create", W1, "w1", None)) == (
        "$JS.API.CONSUMER.CREATE.AF_TASKS.worker-w1",
        {"stream_name": "AF_TASKS", "config": W1.api_config()},
    )
    assert jetstream.request_for(change("update", W1, "w1", None)) == (
        "$JS.API.CONSUMER.CREATE.AF_TASKS.worker-w1",
        {"stream_name": "AF_TASKS", "config": W1.api_config(), "action": "update"},
    )
    delete = Change("delete", "consumer", "AF_TASKS/worker-gone", None)
    assert jetstream.request_for(delete) == ("$JS.API.CONSUMER.DELETE.AF_TASKS.worker-gone", None)


def test_a_listed_consumer_reads_in_the_terms_of_the_one_wanted_and_orphans_are_owned() -> None:
    server = W1.api_config() | {"name": "worker-w1", "num_replicas": 0}
    assert ConsumerSpec.read(server, W1) == W1.fingerprint()
    assert ConsumerSpec.read({"durable_name": "x", "deliver_subject": "spy"}, None) == {
        "durable_name": "x",
        "deliver_subject": "spy",
    }
    assert ConsumerSpec.owned("worker-w1") and ConsumerSpec.owned("route-docs")
    assert not ConsumerSpec.owned("someone-elses")


def test_a_revocation_is_only_ever_a_delete_that_says_revoke() -> None:
    gone = RevocationSpec("w9", "worker-w9")
    assert (gone.key, gone.fingerprint(), gone.describe()) == (
        "credentials worker-w9",
        {},
        ("worker-w9", (("action", "revoke"),)),
    )
    bus = BusState(("broker-host",), revocations=(gone,))
    plan = diff_bus(bus, ObservedBus(), Selection(), example_fleet().host("broker-host"))
    assert plan is not None
    assert [(c.action, c.kind, c.name, c.attrs) for c in plan.changes] == [
        ("delete", "credentials", "worker-w9", (("action", "revoke"),))
    ]
    assert jetstream.ordered(plan.changes) == []  # revoked in the store, not over the API


def test_apply_order_comes_from_each_kind() -> None:
    changes = [
        Change("delete", "stream", "OLD", None),
        change("create", W1, "w1", None),
        change("create", RESULTS, None, None),
        Change("delete", "consumer", "AF_TASKS/worker-gone", None),
        Change("delete", "credentials", "worker-gone", None),
    ]
    assert [(c.action, c.kind) for c in jetstream.ordered(changes)] == [
        ("delete", "consumer"),
        ("create", "stream"),
        ("create", "consumer"),
        ("delete", "stream"),
    ]
    assert set(BUS_KINDS) == {"stream", "consumer", "credentials", "member"}
    assert set(JETSTREAM_KINDS) == {"stream", "consumer"}


class FakeBus:
    """Answers JetStream API requests from a table, as the server would; records them."""

    def __init__(self, replies: dict[str, dict[str, Any]]) -> None:
        self.replies = replies
        self.asked: list[tuple[str, dict[str, Any] | None]] = []

    async def connect(self, endpoint: object) -> FakeBus:
        return self

    async def close(self) -> None:
        pass

    async def request(
        self, nc: object, subject: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.asked.append((subject, body))
        return self.replies.get(subject, {"error": {"description": "not found", "err_code": 1}})


def test_the_bus_is_observed_through_each_kind_s_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orphan = {"durable_name": "worker-gone", "filter_subject": "af.worker.gone.inbox"}
    fake = FakeBus(
        {
            "$JS.API.STREAM.INFO.AF_TASKS": {"config": {"name": "AF_TASKS"}, "state": {}},
            "$JS.API.CONSUMER.LIST.AF_TASKS": {
                "total": 2,
                "consumers": [
                    {"name": "worker-w1", "config": W1.api_config(), "num_pending": 0},
                    {"name": "worker-gone", "config": orphan, "num_pending": 3},
                ],
            },
        }
    )
    monkeypatch.setattr(jetstream, "connect", fake.connect)
    monkeypatch.setattr(jetstream, "request", fake.request)
    tasks = StreamSpec("AF_TASKS", ("af.worker.*.inbox",), "workqueue", 60, 60)
    bus = BusState(("broker-host",), (tasks, RESULTS), ((W1, "w1"),), consumer_stream="AF_TASKS")
    seen = asyncio.run(jetstream._observe(object(), bus))  # type: ignore[arg-type]
    assert fake.asked == [
        ("$JS.API.STREAM.INFO.AF_TASKS", None),
        ("$JS.API.STREAM.INFO.AF_RESULTS", None),
        ("$JS.API.CONSUMER.LIST.AF_TASKS", {"offset": 0}),
    ]
    assert seen.managed == {
        "stream AF_TASKS",
        "consumer AF_TASKS/worker-w1",
        "consumer AF_TASKS/worker-gone",
    }
    assert seen.resources["consumer AF_TASKS/worker-w1"] == W1.fingerprint()
    assert seen.resources["consumer AF_TASKS/worker-gone"] == orphan
    assert seen.queued == {"consumer AF_TASKS/worker-w1": 0, "consumer AF_TASKS/worker-gone": 3}
