"""Poller log lines made readable (the journalctl command: tests/unit/hostside/test_journal.py)."""

from __future__ import annotations

import json

from fleetctl.status import logview


def test_a_json_line_reads_as_time_level_event_and_fields() -> None:
    line = json.dumps(
        {"ts": 0.25, "level": "info", "event": "task_done", "worker_id": "w1", "task_id": "t-1",
         "status": "completed", "note": "two words", "n": 3}
    )  # fmt: skip
    text = logview.readable(line)
    assert text.endswith(' info    task_done task_id=t-1 status=completed note="two words" n=3')
    assert text[19:23] == ".250"


def test_other_lines_pass_through_with_control_characters_escaped() -> None:
    assert logview.readable("Traceback \x1b[31mred\n") == "Traceback \\x1b[31mred"
    line = json.dumps({"ts": 1, "level": "warning", "event": "x", "bad": "a\x1bb"})
    assert "\x1b" not in logview.readable(line)


def test_since_keeps_newer_lines_and_lines_without_a_time() -> None:
    old, new = json.dumps({"ts": 10, "event": "a"}), json.dumps({"ts": 20, "event": "b"})
    assert [logview.since_ok(x, 15) for x in (old, new, "plain")] == [False, True, True]
