"""Three brokers make a cluster: its replicas (default 3), and what they change in the
streams and in the account's JetStream limits. Two or four brokers, replicas above the
brokers and colliding ports are refused by validation (tests/corpus, cases 36, 105-107)."""

from __future__ import annotations

import dataclasses

from fleetctl.bus.resources import account_limits
from fleetctl.reconcile.desired.bus import bus_state
from tests.support.example import cluster_fleet, example_fleet
from tests.support.streams import EVERY_STREAM


def test_one_broker_keeps_one_copy_and_three_brokers_keep_three() -> None:
    assert (example_fleet().is_cluster, example_fleet().replicas) == (False, 1)
    fleet = cluster_fleet()
    assert [h.name for h in fleet.brokers] == ["broker-1", "broker-2", "broker-3"]
    assert (fleet.is_cluster, fleet.replicas) == (True, 3)


def test_nats_replicas_overrides_the_default() -> None:
    fleet = cluster_fleet()
    one = dataclasses.replace(fleet, nats=fleet.nats.model_copy(update={"replicas": 1}))
    assert one.replicas == 1


def test_every_stream_and_bucket_is_declared_with_the_fleets_replicas() -> None:
    single = {s.name: s.api_config()["num_replicas"] for s in bus_state(example_fleet()).streams}
    cluster = {s.name: s.api_config()["num_replicas"] for s in bus_state(cluster_fleet()).streams}
    assert single == dict.fromkeys(EVERY_STREAM, 1)
    assert cluster == dict.fromkeys(EVERY_STREAM, 3)


def test_the_account_limits_count_every_copy() -> None:
    """A cluster counts a stream's max bytes once per replica against the account's limit
    (un-tiered limits, nats-server's accountReservation), so the JWT holds replicas x the
    per-copy setting: the default streams (2.4 GiB) fit three times."""
    nats = cluster_fleet().nats
    assert account_limits(nats, 1).disk_storage == nats.account_max_file_store
    assert account_limits(nats, 3).disk_storage == 3 * nats.account_max_file_store
    assert account_limits(nats, 3).mem_storage == 3 * nats.account_max_memory_store
