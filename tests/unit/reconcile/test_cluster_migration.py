"""Adding brokers to a fleet that runs on one: nats-server does not carry a standalone
server's streams into a cluster (they are made again on it), so apply refuses while tasks
wait on the standalone broker; going back from a cluster to one broker is refused while
tasks are queued or running on the cluster. The migration itself, against real brokers:
tests/e2e/test_cluster.py::test_one_broker_becomes_three_by_a_planned_migration."""

from __future__ import annotations

from fleetctl.bus.clusterview import BrokerView, ClusterView
from fleetctl.reconcile.apply import queued_on_a_standalone_broker
from fleetctl.reconcile.facts import ObservedBus
from tests.support.example import cluster_fleet, example_fleet

QUEUED = {"consumer AF_TASKS/worker-w1": 3, "consumer AF_TASKS/worker-w2": 2}
ALONE = ClusterView({"broker-1": BrokerView("broker-1", "2.15.1", jetstream=True)})
CLUSTERED = ClusterView(
    {
        b: BrokerView(b, "2.15.1", jetstream=True, meta_leader="broker-2", meta_peers=(b,))
        for b in ("broker-1", "broker-2")
    }
)


def test_tasks_queued_on_a_broker_that_runs_alone_are_counted() -> None:
    bus = ObservedBus(queued=QUEUED, cluster=ALONE)
    assert queued_on_a_standalone_broker(cluster_fleet(), bus) == 5


def test_nothing_queued_or_already_a_cluster_or_one_broker_wanted_is_no_reason_to_refuse() -> None:
    fleet = cluster_fleet()
    assert queued_on_a_standalone_broker(fleet, ObservedBus(cluster=ALONE)) == 0
    assert queued_on_a_standalone_broker(fleet, ObservedBus(queued=QUEUED, cluster=CLUSTERED)) == 0
    unread = ObservedBus(queued=QUEUED, cluster=ClusterView())
    assert queued_on_a_standalone_broker(fleet, unread) == 0
    one = ObservedBus(queued=QUEUED, cluster=ALONE)
    assert queued_on_a_standalone_broker(example_fleet(), one) == 0


def test_a_cluster_going_back_to_one_broker_is_refused_while_tasks_are_queued_or_running() -> None:
    """The mirror of one broker becoming three: the broker that stays starts on a store of
    its own, so a task still waiting, or a result still to come, would be lost."""
    from fleetctl.reconcile.apply import busy_leaving_a_cluster, leaving_a_cluster

    three = {"stream AF_TASKS": {"num_replicas": 3}}
    running = {"consumer AF_TASKS/worker-w1": 1}
    busy = ObservedBus(resources=three, queued=QUEUED, running=running)
    assert leaving_a_cluster(example_fleet(), busy)
    assert busy_leaving_a_cluster(example_fleet(), busy) == 6
    only_running = ObservedBus(resources=three, running=running)
    assert busy_leaving_a_cluster(example_fleet(), only_running) == 1
    assert busy_leaving_a_cluster(example_fleet(), ObservedBus(resources=three)) == 0
    one = ObservedBus(resources={"stream AF_TASKS": {"num_replicas": 1}}, queued=QUEUED)
    assert not leaving_a_cluster(example_fleet(), one)
    assert busy_leaving_a_cluster(example_fleet(), one) == 0
    assert busy_leaving_a_cluster(cluster_fleet(), busy) == 0  # still a cluster
    unreached = ObservedBus(reachable=False, resources=three, queued=QUEUED)
    assert busy_leaving_a_cluster(example_fleet(), unreached) == 0
