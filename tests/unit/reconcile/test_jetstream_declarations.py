"""What fleetctl declares on the broker: never a stream that copies messages elsewhere, never a
push consumer (either would let whoever holds the admin creds read or inject tasks)."""

from __future__ import annotations

from typing import Any

import pytest

from fleetctl.bus.client import BusError
from fleetctl.bus.resources import DeclarationError, declarable, fleet_resources
from fleetctl.config.schema import NatsSettings
from fleetctl.reconcile import jetstream
from fleetctl.reconcile.plan.types import Change

COPYING: dict[str, Any] = {
    "republish": {"src": ">", "dest": "_INBOX_ADMIN.x"},
    "sources": [{"name": "AF_TASKS"}],
    "mirror": {"name": "AF_TASKS"},
}


def test_everything_the_fleet_declares_is_declarable() -> None:
    for spec in fleet_resources(NatsSettings(), [("w1", 1), ("w2", 3)]):
        kind, _, name = spec.key.partition(" ")
        subject, body = jetstream.request_for(Change("create", kind, name, None, resource=spec))
        assert body is not None and subject.startswith("$JS.API.")


@pytest.mark.parametrize("key", sorted(COPYING))
def test_copying_streams_are_refused(key: str) -> None:
    config = {"name": "AF_TASKS", "subjects": ["af.worker.*.inbox"], key: COPYING[key]}
    with pytest.raises(DeclarationError, match=f"stream AF_TASKS: fleetctl never declares {key}"):
        declarable("stream", config)
    # and the bus code, which sends every declaration, says so as a bus error
    with pytest.raises(BusError, match=key):
        jetstream._declared("stream", config)


def test_push_consumers_are_refused() -> None:
    config = {"durable_name": "spy", "deliver_subject": "_INBOX_ADMIN.spy"}
    with pytest.raises(DeclarationError, match="consumer spy: fleetctl never declares deliver"):
        declarable("consumer", config)
    assert declarable("consumer", {"durable_name": "w", "deliver_subject": ""})


def test_every_kv_bucket_refuses_rollups_and_purges() -> None:
    """A rollup published on any key a worker may write would purge the whole bucket: every
    bucket the fleet declares has them off, and a hand-built bucket with them on is refused."""
    buckets = [
        s.api_config()
        for s in fleet_resources(NatsSettings(), [("w1", 1)])
        if s.key.startswith("stream KV_")
    ]
    assert [b["name"] for b in buckets] == [
        "KV_AF_LEASES",
        "KV_AF_SPEND",
        "KV_AF_RECORDS",
        "KV_AF_JUDGMENTS",
        "KV_AF_CANCELS",
    ]
    for b in buckets:
        assert (b["allow_rollup_hdrs"], b["deny_purge"], b["deny_delete"]) == (False, True, True)
        assert b["allow_msg_ttl"] is True  # leases expire by themselves
    loose = {"name": "KV_NEW", "subjects": ["$KV.NEW.>"], "allow_rollup_hdrs": True}
    with pytest.raises(
        DeclarationError,
        match="stream KV_NEW: a KV bucket is always declared with allow_rollup_hdrs: false, "
        "deny_delete: true, deny_purge: true",
    ):
        declarable("stream", loose)
    by_subject = {**buckets[0], "name": "OTHER", "deny_purge": False}
    with pytest.raises(DeclarationError, match="deny_purge: true"):
        declarable("stream", by_subject)
