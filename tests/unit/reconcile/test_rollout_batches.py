"""Rolling applies against stand-in hosts (tests/support/rollingfleet.py: five worker hosts
whose pollers restart): worker hosts in batches after the broker, the health gate asked of a
stand-in bus, a failing host rolled back, the rollout stopped beyond `max_failed`, pauses,
what a restart waits for, and the confirmations. The exact host operations are asserted."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fleetctl.config.model import Rollout, Share
from fleetctl.reconcile import rollout
from fleetctl.reconcile.hostapply import CONFIRM_STEP, PING_STEP, HostResult, Reporter, Settings
from fleetctl.reconcile.kept import Kept, KeptVersion
from fleetctl.reconcile.plan.schedule import scheduled
from fleetctl.reconcile.program import Drain
from fleetctl.reconcile.rollout import NOT_STARTED
from tests.support.driftedfleet import CONFIRM, KEEP, RESTORE
from tests.support.fakehosts import Log
from tests.support.rollingfleet import (
    BROKER,
    POLLER,
    Bus,
    creds_path,
    live_view,
    node,
    rolling_fleet,
    stand_ins,
)

# What each worker host's program does (tests/support/fakehosts.py `_said`).
PROGRAM = (KEEP, "file /var/lib/fleetctl/journal.json")


def program_of(i: int) -> tuple[str, ...]:
    return (
        "apply",
        *PROGRAM,
        f"file {creds_path(f'w{i}')}",
        f"systemctl restart w{i}-poller.service",
        "file /var/lib/fleetctl/manifest.json",
        "remove_file /var/lib/fleetctl/journal.json",
    )


def applied(i: int) -> list[tuple[str, ...]]:
    """A worker host's ops when all goes well: what its poller runs (to say what the restart
    waits for), program, --settle, units' check, gate, confirmation."""
    return [
        ("bus", "status of", f"w{i}"),
        (node(i), *program_of(i)),
        ("*", "sleep", "0"),
        (node(i), "run", "systemctl", "is-active", f"w{i}-poller.service"),
        ("bus", "gate", f"w{i}", f"version {POLLER}", "settle 0"),
        (node(i), *CONFIRM),
    ]


class Heard(Reporter):
    def __init__(self) -> None:
        self.notes: list[tuple[str, str]] = []

    def note(self, host: str, text: str) -> None:
        self.notes.append((host, text))


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    """The hosts', the bus's and the sleeps' operations, in order."""
    found = Log()
    monkeypatch.setattr(time, "sleep", lambda s: found.add("*", "sleep", f"{s:g}"))
    return found


def rolled(
    log: Log,
    n: int = 5,
    batch: str | None = "2",
    bus: Bus | None = None,
    settings: Settings | None = None,
    **each: dict[str, object],
) -> tuple[list[HostResult], Heard, Bus]:
    config = Rollout(batch=Share.of_value(batch) if batch else None)
    fleet = rolling_fleet(n, dataclasses.replace(config, **each.pop("rollout", {})))  # type: ignore[arg-type]
    view = live_view(fleet, stand_ins(fleet, log, **each))
    view = dataclasses.replace(view, plan=scheduled(view.plan, fleet.rollout))
    heard, stand_in = Heard(), bus or Bus(log)
    results = rollout.apply(view, heard, settings=settings, workers=stand_in)
    return results, heard, stand_in


def test_worker_hosts_go_in_batches_each_host_checked_and_confirmed(log: Log) -> None:
    results, heard, bus = rolled(log)
    assert [(r.name, r.ok) for r in results] == [(BROKER, True)] + [
        (node(i), True) for i in range(1, 6)
    ]
    assert [op for op in log.ops if op[0] != BROKER] == [
        op for i in range(1, 6) for op in applied(i)
    ]
    assert log.of(BROKER) == []  # nothing to change, nothing left unconfirmed: untouched
    assert heard.notes == [
        ("rollout", "batch 1 of 3: node-1, node-2"),
        ("rollout", "batch 2 of 3: node-3, node-4"),
        ("rollout", "batch 3 of 3: node-5"),
    ]
    assert bus.closed


def test_no_host_of_a_batch_starts_before_the_last_batch_is_done(log: Log) -> None:
    fleet = rolling_fleet(4, Rollout(batch=Share(percent=50)))
    view = live_view(fleet, stand_ins(fleet, log), parallel=10)
    rollout.apply(view, workers=Bus(log))
    hosts = [op[0] for op in log.ops if op[0].startswith("node-")]
    first, second = hosts[:6], hosts[6:]  # program, units' check, confirmation: 3 per host
    assert sorted(first) == [node(1)] * 3 + [node(2)] * 3
    assert sorted(second) == [node(3)] * 3 + [node(4)] * 3


def test_a_host_failing_the_gate_is_rolled_back_and_the_rollout_stops(log: Log) -> None:
    bus = Bus(log, unhealthy={"w1": "did not answer its ping within 20 s"})
    journal = {"w1-poller.service": "fleet-poller: crashed\n"}
    results, heard, _ = rolled(log, bus=bus, node_1={"logs": journal})
    assert [(r.name, r.ok, r.failed_step, r.rolled_back, r.skipped) for r in results] == [
        (BROKER, True, None, False, False),
        (node(1), False, PING_STEP, True, False),
        (node(2), True, None, False, False),  # it passed: it keeps the new version
        (node(3), False, NOT_STARTED, False, True),
        (node(4), False, NOT_STARTED, False, True),
        (node(5), False, NOT_STARTED, False, True),
    ]
    assert results[1].error == (
        "w1: did not answer its ping within 20 s; the last log of w1-poller.service:\n"
        "fleet-poller: crashed\n"
        "rolled back to its previous version"
    )
    stopped = "the rollout stopped after batch 1: 1 worker host(s) failed, more than max_failed (0)"
    assert results[3].error == stopped
    assert log.of(node(1)) == [
        program_of(1),
        ("run", "systemctl", "is-active", "w1-poller.service"),
        ("run", "journalctl", "-u", "w1-poller.service", "-o", "cat", "--no-pager", "-n", "10"),
        RESTORE,
    ]
    for i in (3, 4, 5):
        assert log.of(node(i)) == []
    assert heard.notes[-1] == ("rollout", stopped)
    assert (node(1), "rolled back to its previous version") in heard.notes


def test_up_to_max_failed_hosts_may_fail_then_the_rollout_stops(log: Log) -> None:
    bus = Bus(log, unhealthy={"w1": "x", "w3": "y"})
    results, _, _ = rolled(log, bus=bus, rollout={"max_failed": Share(count=1)})
    assert [(r.name, r.ok, r.rolled_back, r.skipped) for r in results[1:]] == [
        (node(1), False, True, False),
        (node(2), True, False, False),
        (node(3), False, True, False),
        (node(4), True, False, False),
        (node(5), False, False, True),
    ]


def test_a_failure_in_the_last_batch_stops_nothing_more(log: Log) -> None:
    results, heard, _ = rolled(log, bus=Bus(log, unhealthy={"w5": "x"}))
    assert [r.ok for r in results] == [True] * 5 + [False]
    assert not any("stopped" in text for _, text in heard.notes)


def test_batches_wait_the_pause_between_them(log: Log) -> None:
    rolled(log, n=5, rollout={"pause": 30})
    pauses = [op for op in log.ops if op[0] == "*" and op[2] != "0"]  # not --settle's
    assert pauses == [("*", "sleep", "30"), ("*", "sleep", "30")]
    sleeps = [i for i, op in enumerate(log.ops) if op in pauses]
    confirms = [i for i, op in enumerate(log.ops) if op[1:] == CONFIRM]
    assert confirms[1] < sleeps[0] < confirms[2] < confirms[3] < sleeps[1] < confirms[4]


def test_without_a_batch_every_worker_host_is_one_batch(log: Log) -> None:
    results, heard, _ = rolled(log, n=3, batch=None)
    assert [r.ok for r in results] == [True] * 4
    assert heard.notes == []


def test_apply_says_what_each_restart_waits_for(log: Log) -> None:
    status: dict[str, dict[str, object]] = {
        "w1": {"in_flight": [{"task_id": "t1"}, {"task_id": "t2"}]},
        "w2": {"in_flight": []},
    }
    _, heard, _ = rolled(log, n=2, bus=Bus(log, status=status))
    assert heard.notes == [(node(1), "draining w1: 2 tasks, up to 30m")]
    assert ("bus", "status of", "w1") in log.ops and ("bus", "status of", "w2") in log.ops
    first = log.ops.index(("bus", "status of", "w1"))
    assert first < log.ops.index((node(1), *program_of(1)))  # asked before the restart


def test_a_shorter_drain_is_said_and_reaches_the_restart(log: Log) -> None:
    status = {"w1": {"current_tasks": [{"task_id": "t1"}]}}  # a poller without in_flight
    settings = Settings(confirm_timeout=120, drain=Drain(300))
    fleet = rolling_fleet(1)
    stand = stand_ins(fleet, log)
    view = live_view(fleet, stand)
    heard = Heard()
    rollout.apply(view, heard, settings=settings, workers=Bus(log, status=status))
    assert heard.notes == [(node(1), "draining w1: 1 task, up to 5m")]
    restart = next(
        s for s in stand[node(1)].requests[0]["steps"] if s.get("args", [""])[0] == "restart"
    )
    assert restart["drain"] == {"seconds": 300}


def test_no_drain_hands_the_tasks_back_at_once(log: Log) -> None:
    status = {"w1": {"in_flight": [{"task_id": "t1"}, {"task_id": "t2"}]}}
    fleet = rolling_fleet(1)
    stand = stand_ins(fleet, log)
    heard = Heard()
    settings = Settings(drain=Drain(0))
    rollout.apply(
        live_view(fleet, stand), heard, settings=settings, workers=Bus(log, status=status)
    )
    assert heard.notes == [(node(1), "handing back w1's 2 tasks now (--no-drain)")]
    begin = stand[node(1)].requests[0]["steps"][0]
    assert begin["confirm"]["timeout"] == 120


def test_a_confirmation_too_late_means_the_host_rolled_back_by_itself(log: Log) -> None:
    why = "the host rolled back by itself: not confirmed within 2m"
    results, _, _ = rolled(log, n=1, node_1={"fail_ops": {"confirm_previous": why}})
    result = results[1]
    assert (result.ok, result.failed_step, result.error, result.rolled_back) == (
        False,
        CONFIRM_STEP,
        why,
        True,
    )
    assert log.of(node(1))[-1] == CONFIRM  # no restore after it


def test_a_host_lost_after_its_program_restores_itself(log: Log) -> None:
    results, _, _ = rolled(log, n=1, node_1={"lost_after": 1})
    result = results[1]
    assert (result.ok, result.failed_step, result.rolled_back) == (False, "host agent", False)
    assert result.error == (
        "connection lost\nits rollback failed: connection lost; it restores its previous "
        "version by itself within 2m of its last step"
    )


def test_a_host_left_unconfirmed_by_an_apply_that_died_is_confirmed_if_unchanged(
    log: Log,
) -> None:
    fleet = rolling_fleet(1)
    stand = stand_ins(fleet, log)
    view = live_view(fleet, stand)
    broker = view.sessions[BROKER]
    broker.observed = dataclasses.replace(
        broker.observed, kept=Kept((KeptVersion("earlier", "armed"),))
    )
    heard = Heard()
    rollout.apply(view, heard, workers=Bus(log))
    assert log.of(BROKER) == [CONFIRM]
    assert stand[BROKER].requests[-1]["steps"][0]["id"] == "earlier"
    assert heard.notes[0] == (BROKER, "confirming the version an earlier apply left unconfirmed")


def test_the_gate_asks_nothing_of_hosts_that_start_no_poller(log: Log) -> None:
    """Only pollers started or restarted face the gate."""
    results, _, bus = rolled(log, n=1)
    assert [op for op in log.ops if op[0] == "bus"] == [
        ("bus", "status of", "w1"),
        ("bus", "gate", "w1", f"version {POLLER}", "settle 0"),
    ]
    assert results[0].ok and bus.closed
