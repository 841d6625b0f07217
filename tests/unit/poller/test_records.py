"""The result and the dead letter, exactly as the poller stores them (docs/messages.md)."""

from __future__ import annotations

import base64
import dataclasses
import json

from poller import __version__, config, records
from poller.messages import Delivered, Task
from poller.runner import RunOutcome

CFG = config.load(
    {
        "WORKER_ID": "w1",
        "NATS_URL": "nats://127.0.0.1:4222",
        "MODEL_BACKEND": "claude",
        "CLAUDE_MODEL": "opus",
        "LLM": "claude-code",
        "WORKER_LABELS": '{"team": "core"}',
    }
)
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
TASK = Task("t1", "say hi", sender="ci", reply_to="af.reply.x", metadata={"pr": 5})
OUTPUT = json.dumps(
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "hi",
        "total_cost_usd": 0.02,
        "usage": {"input_tokens": 11, "output_tokens": 7},
    }
).encode()

WORKER = {
    "version": 1,
    "task_id": "t1",
    "worker_id": "w1",
    "backend": "claude",
    "llm": "claude-code",
    "model": "opus",
}


def outcome(stdout: bytes = OUTPUT, code: int | None = 0, timed_out: bool = False) -> RunOutcome:
    return RunOutcome(code, timed_out, stdout, len(stdout), b"warn\n", T0, T0 + 2.5, 2.5004)


def test_a_run_is_read_into_a_result_with_the_task_echoed() -> None:
    r = records.ran(CFG, "host-a", TASK, outcome(), attempt=2).to_dict()
    assert r == {
        **WORKER,
        "status": "completed",
        "exit_code": 0,
        "output": "hi",
        "output_truncated": False,
        "output_bytes": len(OUTPUT),
        "stderr_tail": "warn\n",
        "started_at": "2026-09-21T14:13:20.000+00:00",
        "ended_at": "2026-09-21T14:13:22.500+00:00",
        "duration_s": 2.5,
        "attempt": 2,
        "host": "host-a",
        "poller_version": __version__,
        "usage": {"input_tokens": 11, "output_tokens": 7},
        "cost_usd": 0.02,
        "cost_source": "reported",
        "reply_to": "af.reply.x",
        "from": "ci",
        "metadata": {"pr": 5},
        "labels": {"team": "core"},
    }


def test_a_stalled_run_is_a_timeout_that_says_so() -> None:
    stalled = dataclasses.replace(outcome(stdout=b"", code=-15, timed_out=True), stalled=600.0)
    r = records.ran(CFG, "h", TASK, stalled, 1)
    assert (r.status, r.error) == ("timeout", "stalled: no output for 10m")
    assert records.ran(CFG, "h", TASK, outcome(), 1).error is None
    assert [records.duration(s) for s in (600, 90, 5400, 3600, 5, 0.5)] == [
        "10m",
        "1m30s",
        "1h30m",
        "1h",
        "5s",
        "0.5s",
    ]


def test_a_streamed_run_is_parsed_from_what_its_reader_kept() -> None:
    """The raw stream (here cut at OUTPUT_CAP) does not matter once the result event came."""
    raw = b'{"type": "system"}\n' + b"x" * 100
    cut = RunOutcome(0, False, raw, 10_000_000, b"", T0, T0 + 1, 1.0)
    r = records.ran(CFG, "h", TASK, cut, 1, final=OUTPUT.decode())
    assert (r.output, r.output_truncated, r.output_bytes, r.cost_usd) == ("hi", False, 10**7, 0.02)


def test_the_status_of_a_run() -> None:
    def status(out: RunOutcome) -> str:
        return records.ran(CFG, "h", TASK, out, 1).status

    assert status(outcome(code=1)) == "failed"
    assert status(outcome(code=None, timed_out=True)) == "timeout"
    error = json.loads(OUTPUT) | {"is_error": True}
    assert status(outcome(json.dumps(error).encode())) == "failed"


def test_a_run_that_did_not_complete_says_why_with_its_last_stderr_line() -> None:
    def error(out: RunOutcome) -> str | None:
        return records.ran(CFG, "h", TASK, out, 1).error

    def run(code: int | None, stderr: bytes, timed_out: bool = False) -> RunOutcome:
        return RunOutcome(code, timed_out, b"", 0, stderr, T0, T0 + 1, 1.0, time_limit=30.0)

    assert error(run(0, b"warn\n")) is None
    assert error(run(3, b"starting\nboom: something broke\n\n")) == (
        "exited with code 3: boom: something broke"
    )
    assert error(run(-9, b"")) == "killed by signal 9 (SIGKILL)"
    assert error(run(None, b"", timed_out=True)) == "timed out: stopped at its time limit of 30s"
    reported = json.dumps(json.loads(OUTPUT) | {"is_error": True}).encode()
    assert error(outcome(reported)) == "the CLI reported an error (see its output): warn"
    long = records.ran(CFG, "h", TASK, run(1, b"x" * 1000), 1).error
    assert long is not None and long.endswith("...") and len(long) < 340


def test_an_unread_run_keeps_only_what_the_poller_knows() -> None:
    r = records.unread(CFG, "host-a", TASK, outcome(code=3), 1, "poller error: X").to_dict()
    assert r == {
        **WORKER,
        "status": "failed",
        "exit_code": 3,
        "output": "",
        "output_truncated": True,
        "output_bytes": len(OUTPUT),
        "stderr_tail": "",
        "started_at": "2026-09-21T14:13:20.000+00:00",
        "ended_at": "2026-09-21T14:13:22.500+00:00",
        "duration_s": 2.5,
        "attempt": 1,
        "host": "host-a",
        "poller_version": __version__,
        "error": "poller error: X",
        "cost_source": "unknown",
    }


def test_a_rejection_says_why_and_nothing_else() -> None:
    r = records.rejected(CFG, "host-a", "t1", 1, "task_id is missing", T0).to_dict()
    assert r == {
        **WORKER,
        "status": "rejected",
        "output": "",
        "output_truncated": False,
        "output_bytes": 0,
        "stderr_tail": "",
        "started_at": "2026-09-21T14:13:20.000+00:00",
        "ended_at": "2026-09-21T14:13:20.000+00:00",
        "duration_s": 0.0,
        "attempt": 1,
        "host": "host-a",
        "poller_version": __version__,
        "error": "task_id is missing",
        "labels": {"team": "core"},
    }


def test_a_dead_letter_carries_the_task_up_to_its_limit() -> None:
    d = Delivered(9, 3, "af.task.w1", b'{"task_id": "t1"}')
    letter = json.loads(records.dead_letter(CFG, d, "t1", "cannot store the result", T0))
    assert letter == {
        "version": 1,
        "worker_id": "w1",
        "task_id": "t1",
        "reason": "cannot store the result",
        "attempt": 3,
        "stream": "AF_TASKS",
        "stream_seq": 9,
        "subject": "af.task.w1",
        "at": "2026-09-21T14:13:20.000+00:00",
        "task_bytes": 17,
        "task_b64": base64.b64encode(d.data).decode(),
    }
    big = Delivered(9, 1, "af.task.w1", b"x" * (records.DEAD_TASK_KEEP + 1))
    assert "task_b64" not in json.loads(records.dead_letter(CFG, big, None, "too large", T0))


def test_the_status_of_a_stored_result() -> None:
    assert records.status_of(b'{"status": "rejected"}') == "rejected"
    assert records.status_of(b"") is None
    assert records.status_of(b'["status"]') is None
    assert records.status_of(b'{"status": 5}') is None
