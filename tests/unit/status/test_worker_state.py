"""A worker's state and what it is doing, from its heartbeat, as `status` shows them."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from fleetctl.status.report import BrokerStatus, FleetStatus, WorkerStatus
from fleetctl.ui.status_view import _workers

TS = 1_790_000_000.0


def _status(**beat: Any) -> WorkerStatus:
    body = {"state": "running", "ts": TS, "current_tasks": [], **beat}
    return WorkerStatus("w1", "node-1", True, {}, beat=body, beat_at=TS, deployed=True)


def _row(w: WorkerStatus) -> str:
    console = Console(width=300, record=True)
    console.print(_workers([w.as_json(TS)], TS))
    return console.export_text()


def test_a_paused_worker_says_why_and_until_when() -> None:
    w = _status(paused_until=TS + 600, pause_reason="rate limited")
    body = w.as_json(TS)
    assert (body["state"], body["paused_until"], body["pause_reason"]) == (
        "paused",
        TS + 600,
        "rate limited",
    )
    until = time.strftime("%H:%M", time.localtime(TS + 600))
    assert f"paused: rate limited until {until}" in _row(w)
    # A pause that had ended when the heartbeat was sent is no pause.
    assert _status(paused_until=TS - 1, pause_reason="rate limited").state == "idle"


def test_a_draining_worker_and_what_its_running_task_is_doing() -> None:
    task = {"task_id": "t1", "running_s": 75.0}
    doing = {**task, "turn": 3, "tool": "Edit", "tokens": 18234, "cost_usd": 0.0412}
    w = _status(current_tasks=[task], in_flight=[doing], draining=True, drain_until=TS + 1800)
    body = w.as_json(TS)
    assert (body["state"], body["draining"], body["in_flight"]) == ("draining", True, [doing])
    row = _row(w)
    until = time.strftime("%H:%M", time.localtime(TS + 1800))
    assert f"draining until {until} t1 75s (turn 3, Edit, 18.2k tokens, $0.0412)" in row
    busy = _status(current_tasks=[task], in_flight=[doing])
    assert busy.state == "busy" and "busy t1 75s (turn 3, Edit" in _row(busy)


def _heard(interval: float | None, **beat: Any) -> WorkerStatus:
    """Heard from at TS (by this machine's clock), saying its interval if given."""
    said = {} if interval is None else {"heartbeat_interval_s": interval}
    return _status(**said, **beat)


def test_watch_marks_a_worker_silent_after_two_of_its_own_intervals() -> None:
    """A worker beating every 0.5 s is not heartbeating once 1 s passed without one; one
    that says nothing of its interval (an older poller) runs the default 5 s: 10 s."""
    fast, old = _heard(0.5), _heard(None)
    old.worker_id = "w2"
    status = FleetStatus([fast, old], [], BrokerStatus(reachable=True))
    seen = []
    for after in (0.5, 1.0, 1.1, 10.0, 10.1):
        status.mark_silent(TS + after)
        seen.append((after, fast.as_json(TS + after)["state"], old.as_json(TS + after)["state"]))
    assert seen == [
        (0.5, "idle", "idle"),
        (1.0, "idle", "idle"),
        (1.1, "not heartbeating", "idle"),
        (10.0, "not heartbeating", "idle"),
        (10.1, "not heartbeating", "not heartbeating"),
    ]
    body = fast.as_json(TS + 10.1)
    assert (body["heartbeat_age_s"], body["heartbeat_interval_s"]) == (10.1, 0.5)
    assert old.as_json(TS)["heartbeat_interval_s"] == 5.0
    assert WorkerStatus("w3", "node-1", True, {}).as_json(TS)["heartbeat_interval_s"] is None


def test_the_age_is_by_this_machines_clock_not_the_workers() -> None:
    """A worker whose clock is a minute behind is not silent for it: the age counts from
    when its heartbeat arrived here."""
    behind = _heard(0.5, ts=TS - 60)
    assert behind.heartbeat_age(TS + 0.4) == 0.4 and not behind.silent(TS + 0.4)
    # Arrival unknown (a beat set without it): its own `ts`.
    unknown = WorkerStatus("w1", "node-1", True, {}, beat={"ts": TS - 3}, deployed=True)
    assert unknown.heartbeat_age(TS) == 3.0


def test_a_bad_interval_in_a_heartbeat_is_the_default() -> None:
    for said in (0, -1, True, "5", None):
        assert _status(heartbeat_interval_s=said).heartbeat_interval == 5.0
