"""Run one CLI: own session, prompt on stdin, pipes drained concurrently, hard time limit.

The CLI is started in a new session so its whole process group can be signalled: SIGTERM at
the timeout, SIGKILL after the grace period, and SIGKILL to whatever is left of the group once
the leader is gone, so no process of the task survives and a grandchild holding stdout open
cannot keep us reading. A SIGKILLed poller cannot clean up: each running group is recorded in a
state directory and `kill_orphans()` kills what a previous run left behind when the poller
starts again (PR_SET_PDEATHSIG would need a preexec hook, which costs ~2 ms per spawn by
forcing fork instead of vfork; systemd's control-group kill covers the gap on a real host).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CHUNK = 64 * 1024
# After the group is killed the pipes close at once; this only bounds a pathological case.
DRAIN_AFTER_EXIT = 0.5


class SpawnError(Exception):
    """The CLI could not be started at all (missing binary, bad cwd, no permission)."""


@dataclass(frozen=True)
class RunOutcome:
    returncode: int | None  # negative: killed by that signal
    timed_out: bool
    stdout: bytes  # at most `cap` bytes
    stdout_bytes: int  # everything the CLI wrote
    stderr_tail: bytes
    started: float  # time.time()
    ended: float
    duration: float

    @property
    def stdout_truncated(self) -> bool:
        return self.stdout_bytes > len(self.stdout)


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a recorded process from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def kill_orphans(state_dir: Path) -> list[int]:
    """SIGKILL the process groups a previous (killed) poller recorded and never cleaned up."""
    killed: list[int] = []
    if not state_dir.is_dir():
        return killed
    for entry in state_dir.iterdir():
        if not entry.name.isdigit():
            continue
        pgid = int(entry.name)
        with contextlib.suppress(OSError):
            if _start_time(pgid) == entry.read_text().strip():
                os.killpg(pgid, signal.SIGKILL)
                killed.append(pgid)
        entry.unlink(missing_ok=True)
    return killed


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class _Sink:
    """What a reader has kept so far; readable even if the reader never sees EOF."""

    data: bytearray
    total: int = 0


async def _read_head(stream: asyncio.StreamReader, cap: int, sink: _Sink) -> None:
    """Keep the first `cap` bytes, count and discard the rest (so the writer never blocks)."""
    while chunk := await stream.read(CHUNK):
        sink.total += len(chunk)
        if len(sink.data) < cap:
            sink.data += chunk[: cap - len(sink.data)]


async def _read_tail(stream: asyncio.StreamReader, keep: int, sink: _Sink) -> None:
    while chunk := await stream.read(CHUNK):
        sink.total += len(chunk)
        sink.data += chunk
        if len(sink.data) > keep:
            del sink.data[: len(sink.data) - keep]


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write the prompt and close stdin; a CLI that exits without reading it is not an error."""
    try:
        stdin.write(data)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()


def _record(state_dir: Path | None, pgid: int) -> Path | None:
    if state_dir is None:
        return None
    start = _start_time(pgid)
    if start is None:
        return None
    marker = state_dir / str(pgid)
    with contextlib.suppress(OSError):
        marker.write_text(start)
        return marker
    return None


async def run(
    argv: list[str],
    stdin: bytes,
    *,
    timeout: float,
    grace: float,
    cap: int,
    stderr_keep: int = 8 * 1024,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
) -> RunOutcome:
    """Run `argv` to completion or until `timeout`; returns within timeout + grace (+0.5 s)."""
    started, t0 = time.time(), time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        raise SpawnError(f"cannot start {argv[0]!r}: {e}") from e
    assert proc.stdin and proc.stdout and proc.stderr
    pgid = proc.pid  # leader of its own session and group
    marker = _record(state_dir, pgid)
    out, err = _Sink(bytearray()), _Sink(bytearray())
    feeder = asyncio.create_task(_feed(proc.stdin, stdin))
    out_task = asyncio.create_task(_read_head(proc.stdout, cap, out))
    err_task = asyncio.create_task(_read_tail(proc.stderr, stderr_keep, err))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            _killpg(pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                _killpg(pgid, signal.SIGKILL)
                await proc.wait()
        _killpg(pgid, signal.SIGKILL)  # stragglers of the group: nothing of the task survives
        await asyncio.wait({out_task, err_task}, timeout=DRAIN_AFTER_EXIT)
    finally:
        if proc.returncode is None:  # cancelled (shutdown) or an unexpected error
            _killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for t in (feeder, out_task, err_task):
            t.cancel()
        if proc.returncode is None:
            await asyncio.shield(proc.wait())
        if marker is not None:
            marker.unlink(missing_ok=True)
    ended = time.time()
    return RunOutcome(
        returncode=proc.returncode,
        timed_out=timed_out,
        stdout=bytes(out.data),
        stdout_bytes=out.total,
        stderr_tail=bytes(err.data),
        started=started,
        ended=ended,
        duration=time.monotonic() - t0,
    )
