"""A cluster in the plan, from observations given as data: the members (a broker that joins,
one that left), the streams' copies (`replicas 1 -> 3`), and the waves a rolling apply
makes of the brokers (those not restarted together, then each restarted one alone, the meta
leader last). Against real brokers: tests/e2e/test_cluster.py."""

from __future__ import annotations

import dataclasses

from fleetctl.bus.clusterview import BrokerView, ClusterView, read
from fleetctl.config.model import Fleet
from fleetctl.layout import NATS_UNIT
from fleetctl.reconcile import rollout
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.facts import ObservedBus, staying, with_cluster
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.reconcile.plan.types import Change, HostPlan, Plan
from tests.support.driftedfleet import converged_bus
from tests.support.example import cluster_fleet
from tests.support.streams import EVERY_STREAM

BROKERS = ("broker-1", "broker-2", "broker-3")


def _view(members: tuple[str, ...], leader: str) -> ClusterView:
    return ClusterView(
        {m: BrokerView(m, "2.15.1", meta_leader=leader, meta_peers=members) for m in members}
    )


def test_a_standalone_broker_becoming_a_cluster_plans_the_new_members_and_the_copies() -> None:
    """What the migration from one broker to three shows: the same streams, a copy on each
    broker, and the two brokers that join."""
    desired = desired_state(cluster_fleet())
    one_copy = converged_bus(desired)
    one_copy = dataclasses.replace(
        one_copy,
        resources={
            k: ({**v, "num_replicas": 1} if k.startswith("stream ") else v)
            for k, v in one_copy.resources.items()
            if not k.startswith("member ")
        },
    )
    standalone = ClusterView({"broker-1": BrokerView("broker-1", "2.15.1", healthy=True)})
    plan = make_plan(desired, {}, bus=with_cluster(one_copy, standalone))
    assert plan.bus is not None
    lines = {(c.action, c.kind, c.name, tuple(v for _, v in c.attrs)) for c in plan.bus.changes}
    assert ("create", "member", "broker-2", ("JetStream cluster member",)) in lines
    assert ("create", "member", "broker-3", ("JetStream cluster member",)) in lines
    tasks = next(c for c in plan.bus.changes if c.name == "AF_TASKS")
    assert (tasks.action, dict(tasks.attrs)["replicas"]) == ("update", "replicas 1 -> 3")
    assert {c.name for c in plan.bus.changes if c.kind == "stream"} == set(EVERY_STREAM)


def test_a_broker_that_left_servers_yaml_is_a_member_to_remove() -> None:
    desired = desired_state(cluster_fleet())
    seen = with_cluster(converged_bus(desired), _view((*BROKERS, "broker-old"), "broker-2"))
    plan = make_plan(desired, {}, bus=seen)
    assert plan.bus is not None
    assert [(c.action, c.kind, c.name) for c in plan.bus.changes] == [
        ("delete", "member", "broker-old")
    ]
    assert plan.bus.meta_leader == "broker-2"


def _restart(name: str) -> HostPlan:
    change = Change("update", "unit", NATS_UNIT, None, unit_action="restart")
    return HostPlan(name, "192.0.2.1", ("broker-host",), (change,), 0)


def _start(name: str) -> HostPlan:
    change = Change("create", "unit", NATS_UNIT, None, unit_action="start")
    return HostPlan(name, "192.0.2.1", ("broker-host",), (change,), 0)


def _plan(hosts: list[HostPlan], leader: str | None) -> Plan:
    from fleetctl.reconcile.plan.types import BusPlan

    bus = BusPlan("broker-1", (), 0, homes=BROKERS, meta_leader=leader)
    node = HostPlan("worker-node-1", "192.0.2.11", ("worker-host",), (), 0)
    return Plan("live", "r", (*hosts, node), bus=bus)


def test_restarted_brokers_go_one_at_a_time_and_the_meta_leader_last() -> None:
    plan = _plan([_restart(b) for b in BROKERS], leader="broker-1")
    assert rollout.waves(plan) == [["broker-2"], ["broker-3"], ["broker-1"], ["worker-node-1"]]


def test_new_brokers_start_together_and_only_restarts_wait_their_turn() -> None:
    """A new cluster's brokers find their quorum together; a reload takes no copy away."""
    fresh = _plan([_start(b) for b in BROKERS], leader=None)
    assert rollout.waves(fresh) == [list(BROKERS), ["worker-node-1"]]
    mixed = _plan([_start("broker-1"), _restart("broker-2"), _restart("broker-3")], "broker-2")
    assert rollout.waves(mixed) == [["broker-1"], ["broker-3"], ["broker-2"], ["worker-node-1"]]


def test_what_each_broker_says_is_read_into_one_view() -> None:
    def reply(name: str, data: dict[str, object]) -> dict[str, object]:
        return {"server": {"name": name}, "data": data}

    meta = {"leader": "broker-2", "replicas": [{"name": "broker-1"}, {"name": "broker-3"}]}
    view = read(
        varz=[reply("broker-1", {"version": "2.15.1"}), reply("broker-2", {"version": "2.15.1"})],
        routez=[reply("broker-1", {"routes": [{"remote_name": "broker-2"}] * 4})],
        jsz=[
            reply("broker-1", {"config": {}, "meta_cluster": meta}),
            reply("broker-2", {"config": {}, "meta_cluster": meta}),
        ],
        healthz=[
            reply("broker-1", {"status": "ok"}),
            reply("broker-2", {"status": "unavailable", "error": "stream AF_TASKS not current"}),
        ],
    )
    assert view.meta_leader == "broker-2"
    assert view.members == BROKERS
    one, two = view.brokers["broker-1"], view.brokers["broker-2"]
    assert (one.routes, one.healthy, one.jetstream) == (("broker-2",), True, True)
    assert (two.healthy, two.health) == (False, "stream AF_TASKS not current")
    assert "broker-3" not in view.brokers  # it did not answer
    standalone = read([reply("solo", {"version": "2.15.1"})], [], [reply("solo", {})], [])
    assert (standalone.members, standalone.meta_leader) == (("solo",), None)


def test_a_converged_cluster_has_nothing_to_plan() -> None:
    desired = desired_state(cluster_fleet())
    plan = make_plan(desired, {}, bus=with_cluster(converged_bus(desired), _view(BROKERS, "b")))
    assert plan.bus is not None and plan.bus.changes == ()
    assert ObservedBus().cluster is None


def test_a_broker_running_alone_and_the_two_joining_it_start_together() -> None:
    """No meta leader yet: the new brokers would wait for a majority the standalone broker
    gives them only once it restarts with its routes."""
    plan = _plan([_restart("broker-1"), _start("broker-2"), _start("broker-3")], leader=None)
    assert rollout.waves(plan) == [list(BROKERS), ["worker-node-1"]]


def test_a_departed_broker_is_removed_by_its_peer_id_as_nats_server_derives_it() -> None:
    """The ids a real 3-broker cluster gave in its JSZ `meta_cluster` (nats-server 2.15)."""
    import json

    from fleetctl.reconcile.resources.members import MemberSpec, peer_id

    ids = {"broker-1": "10YO1QVC", "broker-2": "tmAUTNky", "broker-3": "awsGlg4T"}
    assert {name: peer_id(name) for name in ids} == ids
    subject, body = MemberSpec.remove_request("broker-3")
    assert subject == "$JS.API.SERVER.REMOVE"
    assert json.loads(body) == {"peer": "broker-3", "peer_id": "awsGlg4T"}


def one_broker_fleet() -> Fleet:
    """The cluster example with broker-2 and broker-3 taken out of servers.yaml."""
    fleet = cluster_fleet()
    kept = tuple(h for h in fleet.hosts if h.name not in ("broker-2", "broker-3"))
    return dataclasses.replace(fleet, hosts=kept)


def test_a_cluster_going_back_to_one_broker_plans_the_copies_and_the_brokers_that_leave() -> None:
    """The mirror of one broker becoming three: each stream and bucket `replicas 3 -> 1`,
    and the two brokers that leave; the one that stays is not planned out of anything."""
    fleet = one_broker_fleet()
    assert not fleet.is_cluster and staying(fleet) == ("broker-1",)
    three = desired_state(cluster_fleet())
    on_the_cluster = converged_bus(three)
    on_the_cluster = dataclasses.replace(
        on_the_cluster,  # its members are read from the cluster, as a live plan does
        resources={k: v for k, v in on_the_cluster.resources.items() if k.startswith("stream ")},
        managed=frozenset(k for k in on_the_cluster.managed if k.startswith("stream ")),
    )
    desired = desired_state(fleet)
    seen = with_cluster(on_the_cluster, _view(BROKERS, "broker-2"), staying(fleet))
    plan = make_plan(desired, {}, bus=seen)
    assert plan.bus is not None
    members = [(c.action, c.name) for c in plan.bus.changes if c.kind == "member"]
    assert members == [("delete", "broker-2"), ("delete", "broker-3")]
    streams = {c.name: (c.action, dict(c.attrs)) for c in plan.bus.changes if c.kind == "stream"}
    assert streams["AF_TASKS"][0] == "update"
    assert {
        n for n, (_, attrs) in streams.items() if attrs.get("replicas") == "replicas 3 -> 1"
    } == set(EVERY_STREAM)
    assert rollout.waves(dataclasses.replace(plan, hosts=(_restart("broker-1"),))) == [["broker-1"]]
