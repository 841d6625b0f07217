"""The bus's plan, apart from the hosts': what it creates, and what it will not claim when
it could not see the bus. Pure: desired state against observed data."""

from __future__ import annotations

from fleetctl.reconcile import jetstream
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.facts import ObservedBus, ObservedHost
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.to_json import plan_to_json
from fleetctl.reconcile.plan.types import Plan
from tests.support.example import example_fleet

BROKER = "broker-host"
DOWN = ObservedBus(reachable=False, error="nothing answers at nats://127.0.0.1:1 (refused)")


def _plan(broker: ObservedHost, bus: ObservedBus, selection: Selection | None = None) -> Plan:
    desired = desired_state(example_fleet())
    hosts = {name: ObservedHost() for name in desired.hosts}
    hosts[BROKER] = broker
    return make_plan(desired, hosts, bus=bus, selection=selection or Selection())


def test_a_bare_broker_s_bus_is_planned_whole() -> None:
    plan = _plan(ObservedHost(), DOWN)
    assert plan.bus is not None and plan.bus.error is None
    kinds = [(c.action, c.kind) for c in plan.bus.changes]
    # tasks, results, dead letters, leases, spend, task records, judgments, cancel marks
    assert kinds.count(("create", "stream")) == 8
    enabled = [w for w in example_fleet().workers if w.enabled]
    assert kinds.count(("create", "consumer")) == len(enabled)


def test_an_installed_server_that_does_not_answer_is_not_observed_not_empty() -> None:
    installed = ObservedHost(
        resources={"unit nats-server.service": {"enabled": True, "active": False}}
    )
    plan = _plan(installed, DOWN)
    assert plan.bus is not None
    assert plan.bus.changes == ()
    assert plan.bus.error == (
        "nats-server.service is installed on broker-host but nothing answers at "
        "nats://127.0.0.1:1 (refused)"
    )
    assert plan_to_json(plan)["bus"]["error"] == plan.bus.error


def test_the_bus_goes_with_the_broker_host_and_with_workers_not_with_other_hosts() -> None:
    assert (
        _plan(ObservedHost(), ObservedBus(), Selection(hosts=frozenset({"worker-node-1"}))).bus
        is None
    )
    narrowed = _plan(ObservedHost(), ObservedBus(), Selection(workers=frozenset({"cmd-docs-01"})))
    assert narrowed.bus is not None
    assert [c.name for c in narrowed.bus.changes] == ["AF_TASKS/worker-cmd-docs-01"]
    assert BROKER in [h.name for h in narrowed.hosts]


def test_the_task_stream_takes_tasks_for_exactly_the_fleet_s_workers_and_queues() -> None:
    fleet = example_fleet()
    tasks = desired_state(fleet).bus.streams[0]
    enabled = [w.id for w in fleet.workers if w.enabled]
    assert tasks.name == "AF_TASKS"
    assert tasks.subjects == tuple(f"af.worker.{w}.inbox" for w in enabled)
    assert "af.worker.cc-haiku-multi-01.inbox" not in tasks.subjects  # disabled


def test_a_departing_consumer_goes_first_and_says_what_it_leaves_unrun() -> None:
    desired = desired_state(example_fleet())
    keys = {s.key: s.api_config() for s in desired.bus.streams}
    keys |= {c.key: c.api_config() for c, _ in desired.bus.consumers}
    gone = "consumer AF_TASKS/worker-old"
    tasks = desired.bus.streams[0]
    old_tasks = {**keys[tasks.key], "subjects": [*tasks.subjects, "af.worker.old.inbox"]}
    seen = ObservedBus(
        resources={**keys, tasks.key: old_tasks, gone: {}},
        managed=frozenset({*keys, gone}),
        queued={gone: 3},
    )
    plan = _plan(ObservedHost(), seen)
    assert plan.bus is not None
    shown = [(c.action, c.kind, c.name, dict(c.attrs).get("queued")) for c in plan.bus.changes]
    assert shown == [
        ("update", "stream", "AF_TASKS", None),
        (
            "delete",
            "consumer",
            "AF_TASKS/worker-old",
            "3 queued tasks left unrun (kept until max_age)",
        ),
    ]
    order = [(c.action, c.kind) for c in jetstream.ordered(plan.bus.changes)]
    assert order == [("delete", "consumer"), ("update", "stream")]


def test_an_existing_bus_gets_the_task_records_bucket_and_nothing_else() -> None:
    """A bus applied before task records existed: the plan adds exactly the bucket."""
    import io

    from rich.console import Console

    from fleetctl.ui.plan_view import print_plan

    desired = desired_state(example_fleet())
    keys = {s.key: s.api_config() for s in desired.bus.streams}
    keys |= {c.key: c.api_config() for c, _ in desired.bus.consumers}
    del keys["stream KV_AF_RECORDS"]
    plan = _plan(ObservedHost(), ObservedBus(resources=keys, managed=frozenset(keys)))
    assert plan.bus is not None
    assert [(c.action, c.kind, c.name) for c in plan.bus.changes] == [
        ("create", "stream", "KV_AF_RECORDS")
    ]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_plan(console, plan)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "+ stream KV_AF_RECORDS" in text
