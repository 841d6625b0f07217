"""The rollout against stand-in hosts (tests/support/fakehosts.py): its waves (the broker
first, then every other host), what it sends each host, and the check that a started unit
stays up for `--settle` seconds, failing the host with the unit's last log lines. No SSH,
no root; the bus is converged here, so nothing is sent to it (with a real nats-server:
tests/integration/test_rollout_bus.py)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fleetctl import layout
from fleetctl.bus.names import NatsNames
from fleetctl.reconcile import rollout
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.rollout import CHECK_STEP, DRAIN_STEP, HostResult
from tests.support.driftedfleet import (
    BROKER,
    BROKER_PROGRAM,
    NATS_UNIT_FILE,
    NODE1,
    NODE2,
    NODE_PROGRAM,
    TUNNEL,
    converged_bus,
    live_view,
    stand_ins,
)
from tests.support.fakehosts import Log


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> Log:
    """The settle wait, recorded in the hosts' log instead of slept."""
    log = Log()
    monkeypatch.setattr(time, "sleep", lambda s: log.add("*", "sleep", f"{s:g}"))
    return log


def test_the_waves_are_the_bus_hosts_then_every_other_host() -> None:
    view = live_view(stand_ins(Log()))
    assert view.plan.bus is not None and view.plan.bus.via == BROKER
    assert rollout.waves(view.plan) == [[BROKER], [NODE1, NODE2]]
    without_bus = dataclasses.replace(view.plan, bus=None)
    assert rollout.waves(without_bus) == [[BROKER, NODE1, NODE2]]


def test_a_host_that_could_not_be_observed_is_in_no_wave() -> None:
    view = live_view(stand_ins(Log()), errors={NODE1: "connection refused"})
    assert rollout.waves(view.plan) == [[BROKER], [NODE2]]


def test_apply_runs_the_broker_first_each_host_its_program_then_the_started_units_check(
    slept: Log,
) -> None:
    hosts = stand_ins(slept)
    view = live_view(hosts, settle=2.5)
    results = rollout.apply(view)
    assert [(r.name, r.ok, r.steps, r.failed_step, r.error) for r in results] == [
        (BROKER, True, len(BROKER_PROGRAM) - 1, None, None),
        (NODE1, True, len(NODE_PROGRAM) - 1, None, None),
        (NODE2, True, len(NODE_PROGRAM) - 1, None, None),
    ]
    assert slept.ops == [
        (BROKER, *BROKER_PROGRAM),
        ("*", "sleep", "2.5"),
        (BROKER, "run", "systemctl", "is-active", layout.NATS_UNIT),
        (NODE1, *NODE_PROGRAM),
        ("*", "sleep", "2.5"),
        (NODE1, "run", "systemctl", "is-active", TUNNEL),
        (NODE2, *NODE_PROGRAM),
        ("*", "sleep", "2.5"),
        (NODE2, "run", "systemctl", "is-active", TUNNEL),
    ]


def test_in_parallel_no_other_host_starts_before_the_broker_is_done(slept: Log) -> None:
    view = live_view(stand_ins(slept), parallel=10)
    assert [r.ok for r in rollout.apply(view)] == [True, True, True]
    hosts = [op[0] for op in slept.ops if op[0] != "*"]
    assert hosts[:2] == [BROKER, BROKER]  # its program, then its units' check
    assert sorted(hosts[2:]) == [NODE1, NODE1, NODE2, NODE2]


def test_a_failed_broker_leaves_the_bus_alone_and_the_other_hosts_go_on(slept: Log) -> None:
    hosts = stand_ins(slept, broker={"fail_step": 3, "fail_error": "systemctl exited 1"})
    view = live_view(hosts, bus=ObservedBus())  # nothing on the bus: all of it to create
    assert view.plan.bus is not None and view.plan.bus.changes
    results = rollout.apply(view)
    assert [(r.name, r.ok, r.failed_step, r.error) for r in results] == [
        (BROKER, False, f"restart {layout.NATS_UNIT}", "systemctl exited 1"),
        (NODE1, True, None, None),
        (NODE2, True, None, None),
    ]
    assert [op[:2] for op in slept.ops if op[0] == BROKER] == [(BROKER, "apply")]  # no forward


# How systemctl is-active says a unit is not running: it failed, is stopped, or is being
# restarted by systemd after it exited (Restart=).
@pytest.mark.parametrize("state", ["failed", "inactive", "activating"])
def test_a_unit_that_does_not_stay_up_fails_its_host_with_its_last_log_lines(
    slept: Log, state: str
) -> None:
    journal = "starting\nssh: connect to host 192.0.2.10 port 22: No route to host\n"
    hosts = stand_ins(slept, node1={"active": {TUNNEL: state}, "logs": {TUNNEL: journal}})
    results = rollout.apply(live_view(hosts, settle=2))
    assert [(r.name, r.ok, r.failed_step) for r in results] == [
        (BROKER, True, None),
        (NODE1, False, CHECK_STEP),
        (NODE2, True, None),
    ]
    assert results[1].error == (
        f"{TUNNEL} is {state} 2 s after it was started; its last log:\n"
        "starting\nssh: connect to host 192.0.2.10 port 22: No route to host"
    )
    assert slept.of(NODE1) == [
        NODE_PROGRAM,
        ("run", "systemctl", "is-active", TUNNEL),
        ("run", "journalctl", "-u", TUNNEL, "-o", "cat", "--no-pager", "-n", "10"),
    ]


def test_a_unit_systemctl_does_not_report_on_is_unknown_and_fails_too(slept: Log) -> None:
    hosts = stand_ins(slept, broker={"active": {layout.NATS_UNIT: ""}})
    result = rollout.apply(live_view(hosts))[0]
    assert (result.name, result.ok, result.failed_step) == (BROKER, False, CHECK_STEP)
    assert result.error == (
        f"{layout.NATS_UNIT} is unknown 0 s after it was started; its last log:\n(no log lines)"
    )


def test_a_host_that_could_not_be_observed_is_reported_and_not_touched(slept: Log) -> None:
    hosts = stand_ins(slept)
    results = rollout.apply(live_view(hosts, errors={NODE2: "connection refused"}))
    assert results[-1] == HostResult(NODE2, False, 0, "connect and observe", "connection refused")
    assert slept.of(NODE2) == []


def test_the_reporter_hears_each_step_and_each_host_once_done(slept: Log) -> None:
    heard: list[tuple[str, ...]] = []

    class Heard(rollout.Reporter):
        def step(self, host: str, label: str, done: int, total: int) -> None:
            heard.append((host, label, f"{done}/{total}"))

        def finished(self, result: HostResult) -> None:
            heard.append((result.name, "finished", str(result.ok)))

    rollout.apply(live_view(stand_ins(slept)), Heard())
    assert [h for h in heard if h[0] == BROKER] == [
        (BROKER, "record pending restarts", "0/6"),
        (BROKER, f"file {NATS_UNIT_FILE}", "1/6"),
        (BROKER, "systemctl daemon-reload", "2/6"),
        (BROKER, f"restart {layout.NATS_UNIT}", "3/6"),
        (BROKER, "write the manifest", "4/6"),
        (BROKER, "clear the journal", "5/6"),
        (BROKER, "done", "6/6"),
        (BROKER, CHECK_STEP, "0/0"),
        (BROKER, "finished", "True"),
    ]


def with_departed_consumer(queued: int) -> ObservedBus:
    """The converged bus plus the consumer of a worker that left fleet.yaml."""
    bus = converged_bus(live_view(stand_ins(Log())).desired)
    key = f"consumer AF_TASKS/{NatsNames.consumer('old')}"
    return dataclasses.replace(
        bus,
        resources={**bus.resources, key: {"durable_name": "worker-old"}},
        managed=bus.managed | {key},
        queued={key: queued},
    )


def test_a_departing_worker_with_queued_tasks_is_drained_before_the_broker_is_touched(
    slept: Log,
) -> None:
    view = live_view(stand_ins(slept), bus=with_departed_consumer(queued=2))
    assert view.plan.bus is not None
    assert [(c.action, c.name) for c in view.plan.bus.changes] == [
        ("delete", "AF_TASKS/worker-old")
    ]
    assert rollout.departing(view) == ["old"]
    # No store here, so no creds to read its tasks as: the broker's wave (whose config
    # would revoke the worker) waits for the next run; the other hosts go on.
    results = rollout.apply(view)
    assert [(r.name, r.ok, r.steps, r.failed_step, r.error) for r in results] == [
        (BROKER, False, 0, DRAIN_STEP, "no credentials left for old to read its queued tasks with"),
        (NODE1, True, len(NODE_PROGRAM) - 1, None, None),
        (NODE2, True, len(NODE_PROGRAM) - 1, None, None),
    ]
    assert slept.of(BROKER) == []


def test_a_departing_worker_with_nothing_queued_needs_no_drain() -> None:
    view = live_view(stand_ins(Log()), bus=with_departed_consumer(queued=0))
    assert view.plan.bus is not None and len(view.plan.bus.changes) == 1
    assert rollout.departing(view) == []
