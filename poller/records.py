"""What the poller stores on the bus, built in one place: a task's result and a dead letter.

A result is made four ways: from the CLI's run (`ran`), from a run whose output could not
be read (`unread`: a poller bug still ends in a result, never in a rerun), for a task
refused before anything ran (`rejected`), and for one cancelled before it ran
(`cancelled`). All start from `_base`, which fills in what the worker and this host say
about themselves. Schemas: docs/messages.md. Pure: no bus, no
process.
"""

from __future__ import annotations

import base64
import json
import signal
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from poller import __version__, backends, pricing
from poller.config import Config
from poller.messages import Delivered, Result, Task
from poller.runner import RunOutcome

DEAD_TASK_KEEP = 512 * 1024  # the original task is embedded in a dead letter up to this size
REASON_STDERR_CHARS = 300  # the last stderr line quoted in a failure's `error`
CANCELLED_QUEUED = "cancelled before it ran (fleetctl task cancel): it was not run"
CANCELLED_RUNNING = "cancelled while it ran (fleetctl task cancel): its CLI was stopped"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _base(
    cfg: Config,
    host: str,
    task_id: str,
    attempt: int,
    status: str,
    started: float,
    ended: float,
    duration: float,
) -> Result:
    """A result with no output, no exit code and nothing from the task."""
    return Result(
        task_id=task_id,
        worker_id=cfg.worker_id,
        backend=cfg.backend,
        llm=cfg.llm,
        model=cfg.model,
        status=status,
        exit_code=None,
        output="",
        output_truncated=False,
        output_bytes=0,
        stderr_tail="",
        started_at=iso(started),
        ended_at=iso(ended),
        duration_s=round(duration, 3),
        attempt=attempt,
        host=host,
        poller_version=__version__,
    )


def _of_task(base: Result, cfg: Config, task: Task) -> Result:
    """`base` with what a result of a task that was read carries of it (its type, where to
    answer, who sent it, its metadata) and the worker's labels."""
    return replace(
        base,
        task_type=task.task_type,
        reply_to=task.reply_to,
        sender=task.sender,
        metadata=task.metadata,
        labels=dict(cfg.labels),
    )


def ran(
    cfg: Config, host: str, task: Task, out: RunOutcome, attempt: int, final: str | None = None
) -> Result:
    """The result of a CLI that ran: its answer, usage and cost read from its output:
    `final`, what its stream reader kept of it (poller/streams.py), else its stdout."""
    stderr = out.stderr_tail.decode(errors="replace")
    if final is not None:
        parsed = backends.parse_output(cfg.backend, final, True, stderr)
    else:
        text = out.stdout.decode(errors="replace")
        parsed = backends.parse_output(cfg.backend, text, not out.stdout_truncated, stderr)
    if out.cancelled:
        status = "cancelled"
    elif out.timed_out:
        status = "timeout"
    elif out.returncode == 0 and not parsed.is_error:
        status = "completed"
    else:
        status = "failed"
    cost_usd, cost_source = pricing.cost(parsed, cfg.price, cfg.trust_reported_cost)
    base = _base(cfg, host, task.task_id, attempt, status, out.started, out.ended, out.duration)
    return replace(
        _of_task(base, cfg, task),
        error=(
            failure(status, out, parsed.is_error, stderr)
            if out.stalled is None
            else stall_reason(out.stalled)
        ),
        exit_code=out.returncode,
        output=parsed.output,
        output_truncated=out.stdout_truncated and final is None,
        output_bytes=out.stdout_bytes,
        stderr_tail=stderr,
        usage=parsed.usage,
        cost_usd=cost_usd,
        cost_source=cost_source,
    )


def stall_reason(seconds: float) -> str:
    """`stalled: no output for 10m`: the error of a task whose CLI went silent."""
    return f"stalled: no output for {duration(seconds)}"


def duration(seconds: float) -> str:
    """600 -> `10m`, 90 -> `1m30s`, 5400 -> `1h30m`, 0.5 -> `0.5s`."""
    if seconds < 1:
        return f"{seconds:g}s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def failure(status: str, out: RunOutcome, reported_error: bool, stderr: str) -> str | None:
    """Why a CLI's run did not complete, in one line: how it ended, then the last line it
    wrote on stderr (most CLIs say what went wrong there). None when it completed."""
    if status == "completed":
        return None
    if status == "cancelled":
        return CANCELLED_RUNNING
    if status == "timeout":
        limit = f" of {out.time_limit:g}s" if out.time_limit is not None else ""
        why = f"timed out: stopped at its time limit{limit}"
    elif out.returncode is not None and out.returncode < 0:
        why = f"killed by signal {_signal_name(-out.returncode)}"
    elif out.returncode:
        why = f"exited with code {out.returncode}"
    elif reported_error:
        why = "the CLI reported an error (see its output)"
    else:
        why = "failed"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if last:
        cut = len(last) > REASON_STDERR_CHARS
        why += ": " + (last[: REASON_STDERR_CHARS - 3] + "..." if cut else last)
    return why


def _signal_name(number: int) -> str:
    try:
        return f"{number} ({signal.Signals(number).name})"
    except ValueError:
        return str(number)


def unread(cfg: Config, host: str, task: Task, out: RunOutcome, attempt: int, error: str) -> Result:
    """A `failed` result with nothing read from the CLI's output, and the reason."""
    base = _base(cfg, host, task.task_id, attempt, "failed", out.started, out.ended, out.duration)
    return replace(
        base,
        exit_code=out.returncode,
        output_truncated=out.stdout_bytes > 0,
        output_bytes=out.stdout_bytes,
        error=error,
        cost_source="unknown",
    )


def rejected(cfg: Config, host: str, task_id: str, attempt: int, reason: str, now: float) -> Result:
    """A task refused before anything ran (bad input, over budget): why, and nothing else."""
    base = _base(cfg, host, task_id, attempt, "rejected", now, now, 0.0)
    return replace(base, labels=dict(cfg.labels), error=reason)


def not_run(
    cfg: Config,
    host: str,
    task: Task,
    attempt: int,
    reason: str,
    code: dict[str, Any] | None,
    now: float,
) -> Result:
    """A `failed` task whose CLI never ran: its workspace could not be made (setup failed,
    no disk), `code` says where (`code.phase`)."""
    base = _base(cfg, host, task.task_id, attempt, "failed", now, now, 0.0)
    return replace(_of_task(base, cfg, task), error=reason, code=code)


def cancelled(cfg: Config, host: str, task: Task, attempt: int, now: float) -> Result:
    """A task cancelled before it ran: nothing ran, nothing was spent; never retried."""
    base = _base(cfg, host, task.task_id, attempt, "cancelled", now, now, 0.0)
    return replace(_of_task(base, cfg, task), error=CANCELLED_QUEUED)


def status_of(data: bytes) -> str | None:
    """The `status` of a stored result (our own subject: our own JSON), None if unreadable."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    status = obj.get("status") if isinstance(obj, dict) else None
    return status if isinstance(status, str) else None


def dead_letter(cfg: Config, d: Delivered, task_id: str | None, reason: str, now: float) -> bytes:
    """The dead letter of a delivery: why, which attempt, and the task as received (up to
    DEAD_TASK_KEEP bytes) so that `fleetctl dead replay` can send it again."""
    record: dict[str, Any] = {
        "version": 1,
        "worker_id": cfg.worker_id,
        "task_id": task_id,
        "reason": reason,
        "attempt": d.attempt,
        "stream": cfg.task_stream,
        "stream_seq": d.seq,
        "subject": d.subject,
        "at": iso(now),
        "task_bytes": len(d.data),
    }
    if len(d.data) <= DEAD_TASK_KEEP:
        record["task_b64"] = base64.b64encode(d.data).decode()
    return json.dumps(record).encode()
