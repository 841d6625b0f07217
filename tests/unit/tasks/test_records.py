"""Task records as data: what a send writes, how a later send of the same id extends it,
who counts as solicited, and what a reader refuses to take for a record."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleetctl.tasks import record as taskrecord
from fleetctl.tasks.record import Sender, Target, TaskRecord

SENDER = Sender("fleet-publisher", "UABC", "alice@laptop")


def _record(*targets: Target, at: str = "2026-12-01T09:00:00.000+00:00") -> TaskRecord:
    return taskrecord.new("t-1", b"x" * 42, targets, SENDER, route="review", at=at)


def test_a_record_names_its_targets_sender_route_and_size() -> None:
    queue = Target("", "t-1:route-go", 8, False, "go", ("q1", "q2"))
    record = _record(Target("w1", "t-1:w1", 7, True), queue)
    assert record.as_json() == {
        "version": 1,
        "task_id": "t-1",
        "at": "2026-12-01T09:00:00.000+00:00",
        "last_at": "2026-12-01T09:00:00.000+00:00",
        "sends": 1,
        "sender": {"user": "fleet-publisher", "public_key": "UABC", "login": "alice@laptop"},
        "route": "review",
        "repo": None,
        "ref": None,
        "task_bytes": 42,
        "targets": [
            {"worker_id": "w1", "msg_id": "t-1:w1", "stream_seq": 7},
            {"route": "go", "members": ["q1", "q2"], "msg_id": "t-1:route-go", "stream_seq": 8},
        ],
    }
    # read back as written (whether one send was a duplicate is that send's, not kept)
    kept = tuple(replace(t, duplicate=False) for t in record.targets)
    assert taskrecord.parse("t-1", record.encode()) == replace(record, targets=kept)
    # a target, or a member of a route the task went to, was asked; nobody else
    assert [record.solicited(w) for w in ("w1", "q2", "w2", "go", "")] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_a_later_send_of_the_same_id_adds_its_targets_and_keeps_the_first_send() -> None:
    first = _record(Target("w1", "t-1:w1", 7, False))
    later = taskrecord.new(
        "t-1",
        b"y",
        [Target("w2", "t-1:w2:replay-3", 12, False), Target("w1", "t-1:w1", 11, False)],
        Sender("other", None, None),
        at="2026-12-01T10:00:00.000+00:00",
    )
    merged = first.merged(later)
    assert [(t.worker_id, t.stream_seq) for t in merged.targets] == [("w1", 11), ("w2", 12)]
    assert (merged.at, merged.last_at, merged.sends) == (
        first.at,
        "2026-12-01T10:00:00.000+00:00",
        2,
    )
    assert (merged.sender, merged.task_bytes, merged.route) == (SENDER, 42, "review")


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"task_id": "t-2"},  # stored under another task's key
        {"at": None},
        {"task_bytes": "42"},
        {"targets": {"worker_id": "w1"}},
        {"targets": [{"worker_id": "w1", "msg_id": "m", "stream_seq": -1}]},
        {"targets": [{"worker_id": "w1", "msg_id": "m", "stream_seq": True}]},
        {"targets": [{"route": "go", "members": [1], "msg_id": "m", "stream_seq": 1}]},
        {"targets": [{"msg_id": "m", "stream_seq": 1}]},
    ],
)
def test_a_reader_refuses_what_is_not_a_record_of_that_task(change: dict[str, object]) -> None:
    body = _record(Target("w1", "t-1:w1", 7, False)).as_json() | change
    assert taskrecord.parse("t-1", json.dumps(body).encode()) is None


def test_not_json_or_not_an_object_is_no_record() -> None:
    for data in (b"", b"\xff", b"[1]", b"null", b'"t-1"'):
        assert taskrecord.parse("t-1", data) is None


def test_a_record_of_an_id_that_is_not_a_task_id_is_no_record() -> None:
    for bad in ("t-1.x", "t-1\n", "t 1", ""):
        body = _record(Target("w1", "t-1:w1", 7, False)).as_json() | {"task_id": bad}
        assert taskrecord.parse(bad, json.dumps(body).encode()) is None


def test_unknown_fields_are_ignored_and_missing_optional_ones_defaulted() -> None:
    body = {
        "version": 1,
        "task_id": "t-1",
        "at": "2026-12-01T09:00:00.000+00:00",
        "task_bytes": 3,
        "targets": [{"worker_id": "w1", "msg_id": "t-1:w1", "stream_seq": 1}],
        "future": {"x": 1},
        "sender": "not an object",
    }
    record = taskrecord.parse("t-1", json.dumps(body).encode())
    assert record is not None
    assert (record.sender, record.sends, record.last_at) == (
        Sender(None, None, None),
        1,
        record.at,
    )
