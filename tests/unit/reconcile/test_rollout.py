"""The rollout against stand-in hosts (tests/support/fakehosts.py): its waves (the broker
first, then every other host), what it sends each host (the program keeping the previous
version first, then its confirmation), the check that a started unit stays up for `--settle`
seconds, and a failed host's rollback with the unit's last log lines. No SSH, no root; the
bus is converged here, so nothing is sent to it (with a real nats-server:
tests/integration/test_rollout_bus.py). Batches, the health gate and drains:
test_rollout_batches.py."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fleetctl import layout
from fleetctl.bus.names import NatsNames
from fleetctl.reconcile import rollout
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.hostapply import CHECK_STEP, HostResult
from fleetctl.reconcile.rollout import DRAIN_STEP
from tests.support.driftedfleet import (
    BROKER,
    BROKER_PROGRAM,
    CONFIRM,
    NATS_UNIT_FILE,
    NODE1,
    NODE2,
    NODE_PROGRAM,
    RESTORE,
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
        (BROKER, *CONFIRM),
        (NODE1, *NODE_PROGRAM),
        ("*", "sleep", "2.5"),
        (NODE1, "run", "systemctl", "is-active", TUNNEL),
        (NODE1, *CONFIRM),
        (NODE2, *NODE_PROGRAM),
        ("*", "sleep", "2.5"),
        (NODE2, "run", "systemctl", "is-active", TUNNEL),
        (NODE2, *CONFIRM),
    ]
    # One generation for the whole apply, confirmed on each host once its checks passed.
    generations = {h.requests[-1]["steps"][0]["id"] for h in hosts.values()}
    assert len(generations) == 1
    assert {h.requests[-2]["steps"][0]["id"] for h in hosts.values()} == generations


def test_in_parallel_no_other_host_starts_before_the_broker_is_done(slept: Log) -> None:
    view = live_view(stand_ins(slept), parallel=10)
    assert [r.ok for r in rollout.apply(view)] == [True, True, True]
    hosts = [op[0] for op in slept.ops if op[0] != "*"]
    assert hosts[:3] == [BROKER, BROKER, BROKER]  # its program, its units' check, confirmed
    assert sorted(hosts[3:]) == [NODE1] * 3 + [NODE2] * 3


def test_a_failed_broker_is_rolled_back_its_bus_left_alone_and_the_others_go_on(
    slept: Log,
) -> None:
    restored = {"restored": "g", "started": [layout.NATS_UNIT]}
    failing = {"fail_step": 4, "fail_error": "systemctl exited 1"}
    hosts = stand_ins(slept, broker=failing | {"said": {"restore_previous": restored}})
    view = live_view(hosts, bus=ObservedBus())  # nothing on the bus: all of it to create
    assert view.plan.bus is not None and view.plan.bus.changes
    results = rollout.apply(view)
    assert [(r.name, r.ok, r.failed_step, r.error, r.rolled_back) for r in results] == [
        (
            BROKER,
            False,
            f"restart {layout.NATS_UNIT}",
            "systemctl exited 1\nrolled back to its previous version",
            True,
        ),
        (NODE1, True, None, None, False),
        (NODE2, True, None, None, False),
    ]
    assert slept.of(BROKER) == [  # no forward to the bus
        BROKER_PROGRAM,
        RESTORE,
        ("run", "systemctl", "is-active", layout.NATS_UNIT),  # the restored unit, checked
    ]
    restore = hosts[BROKER].requests[-1]["steps"][0]
    program = hosts[BROKER].requests[-2]["steps"][0]
    assert restore == {
        "op": "restore_previous",
        "log": "/var/lib/fleetctl/previous.json",
        "id": program["id"],  # this apply's own generation, nothing older
    }


# How systemctl is-active says a unit is not running: it failed, is stopped, or is being
# restarted by systemd after it exited (Restart=).
@pytest.mark.parametrize("state", ["failed", "inactive", "activating"])
def test_a_unit_that_does_not_stay_up_fails_its_host_with_its_last_log_lines(
    slept: Log, state: str
) -> None:
    journal = "starting\nssh: connect to host 192.0.2.10 port 22: No route to host\n"
    hosts = stand_ins(slept, node1={"active": {TUNNEL: state}, "logs": {TUNNEL: journal}})
    results = rollout.apply(live_view(hosts, settle=2))
    assert [(r.name, r.ok, r.failed_step, r.rolled_back) for r in results] == [
        (BROKER, True, None, False),
        (NODE1, False, CHECK_STEP, True),
        (NODE2, True, None, False),
    ]
    assert results[1].error == (
        f"{TUNNEL} is {state} 2 s after it was started; its last log:\n"
        "starting\nssh: connect to host 192.0.2.10 port 22: No route to host\n"
        "rolled back to its previous version"
    )
    assert slept.of(NODE1) == [
        NODE_PROGRAM,
        ("run", "systemctl", "is-active", TUNNEL),
        ("run", "journalctl", "-u", TUNNEL, "-o", "cat", "--no-pager", "-n", "10"),
        RESTORE,  # the stand-in's restore reports no unit started: nothing more to check
    ]


def test_a_unit_systemctl_does_not_report_on_is_unknown_and_fails_too(slept: Log) -> None:
    hosts = stand_ins(slept, broker={"active": {layout.NATS_UNIT: ""}})
    result = rollout.apply(live_view(hosts))[0]
    assert (result.name, result.ok, result.failed_step) == (BROKER, False, CHECK_STEP)
    assert result.error == (
        f"{layout.NATS_UNIT} is unknown 0 s after it was started; its last log:\n"
        "(no log lines)\nrolled back to its previous version"
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
        (BROKER, "keep the previous version", "0/7"),
        (BROKER, "record pending restarts", "1/7"),
        (BROKER, f"file {NATS_UNIT_FILE}", "2/7"),
        (BROKER, "systemctl daemon-reload", "3/7"),
        (BROKER, f"restart {layout.NATS_UNIT}", "4/7"),
        (BROKER, "write the manifest", "5/7"),
        (BROKER, "clear the journal", "6/7"),
        (BROKER, "done", "7/7"),
        (BROKER, CHECK_STEP, "0/0"),
        (BROKER, "confirm the new version", "7/7"),
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
