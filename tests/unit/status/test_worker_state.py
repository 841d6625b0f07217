"""A worker's state and what it is doing, from its heartbeat, as `status` shows them."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from fleetctl.status.report import WorkerStatus
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
