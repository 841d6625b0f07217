"""A departing worker's queued task as the dead letter fleetctl writes for it
(fleetctl/reconcile/drain.py): the poller's shape (docs/messages.md), so `fleetctl dead
replay` can send it on. The message is a stand-in for nats.py's; moving real messages on a
real bus is tests/integration/test_drain.py."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest

from fleetctl.reconcile import drain


def message(data: bytes, *, delivered: int = 1, seq: int = 7) -> Any:
    """What drain reads of a fetched nats.py message: data, subject, metadata."""
    metadata = SimpleNamespace(num_delivered=delivered, sequence=SimpleNamespace(stream=seq))
    return SimpleNamespace(data=data, subject="af.worker.w1.inbox", metadata=metadata)


def test_a_task_becomes_the_pollers_dead_letter_with_its_bytes() -> None:
    task = json.dumps({"task_id": "t-1", "prompt": "hi"}).encode()
    record = json.loads(drain.dead_letter("w1", "AF_TASKS", message(task, delivered=2)))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.pop("at"))
    assert record == {
        "version": 1,
        "worker_id": "w1",
        "task_id": "t-1",
        "reason": "worker removed from the fleet: dead-lettered by fleetctl apply before its "
        "consumer",
        "attempt": 2,
        "stream": "AF_TASKS",
        "stream_seq": 7,
        "subject": "af.worker.w1.inbox",
        "task_bytes": len(task),
        "task_b64": base64.b64encode(task).decode(),
    }


@pytest.mark.parametrize(
    "data", [b"not json", b'["a list"]', b'{"task_id": 12}', b"\xff\xfe", b'{"no_id": "x"}']
)
def test_a_task_without_a_readable_id_is_kept_with_none_for_its_id(data: bytes) -> None:
    record = json.loads(drain.dead_letter("w1", "AF_TASKS", message(data)))
    assert record["task_id"] is None
    assert base64.b64decode(record["task_b64"]) == data


def test_a_task_over_the_size_the_poller_keeps_is_recorded_without_its_bytes() -> None:
    kept = b"x" * drain.KEEP
    assert "task_b64" in json.loads(drain.dead_letter("w1", "S", message(kept)))
    record = json.loads(drain.dead_letter("w1", "S", message(kept + b"x")))
    assert record["task_bytes"] == drain.KEEP + 1 and "task_b64" not in record


def test_a_worker_drains_as_itself_with_its_own_inbox_prefix(tmp_path: Any) -> None:
    who = drain.identity_of("w1", tmp_path / "w1.creds")
    assert (who.user, who.creds, who.inbox_prefix) == (
        "worker-w1",
        tmp_path / "w1.creds",
        "_INBOX_w1",
    )
