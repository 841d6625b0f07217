"""Run one CLI: own session, prompt on stdin, pipes drained concurrently, hard time limit.

The CLI is started in a new session so its whole process group can be signalled: SIGTERM at
the timeout, SIGKILL after the grace period, and SIGKILL to whatever is left of the group once
the leader is gone, so no process of the task survives and a grandchild holding stdout open
cannot keep us reading. A cancel (the poller shutting down) kills the group as well, even
one that arrives while the CLI is still being started. A SIGKILLed poller cannot clean up:
each running group is recorded in a state directory, with the poller that runs it, and
`kill_orphans()` kills what a poller now gone left behind when a poller starts
(PR_SET_PDEATHSIG would need a preexec hook, which costs ~2 ms per spawn by forcing fork
instead of vfork; systemd's control-group kill covers the gap on a real host).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# After the group is killed the pipes close at once; this only bounds a pathological case.
DRAIN_AFTER_EXIT = 0.5
# A stdout line longer than this is not handed to `on_line` (it still counts as output):
# a CLI's events are far smaller, but a tool's result echoed in one may not be.
LINE_MAX = 4 * 1024 * 1024


OnLine = Callable[[bytes], None]


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
    # The stall timeout that ended it (no output on stdout or stderr for that long), if any.
    stalled: float | None = None
    time_limit: float | None = None  # the timeout it ran under (seconds)
    cancelled: bool = False  # stopped because its task was cancelled (poller/cancel.py)

    @property
    def stdout_truncated(self) -> bool:
        return self.stdout_bytes > len(self.stdout)


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a recorded process from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def kill_orphans(state_dir: Path) -> list[int]:
    """SIGKILL the process groups that a poller now gone recorded and never cleaned up.

    Another poller may share the state directory (a second instance on this host, started
    while the first was frozen): a group whose recording poller still runs is not an orphan
    and is left alone, marker and all."""
    killed: list[int] = []
    if not state_dir.is_dir():
        return killed
    for entry in state_dir.iterdir():
        if not entry.name.isdigit():
            continue
        pgid = int(entry.name)
        with contextlib.suppress(OSError):
            marker = _Marker.read(entry.read_text())
            if marker.poller_alive():
                continue
            if start_time(pgid) == marker.start:
                os.killpg(pgid, signal.SIGKILL)
                killed.append(pgid)
        entry.unlink(missing_ok=True)
    return killed


@dataclass(frozen=True)
class _Marker:
    """A running CLI's record: its start time, and the poller (pid, start time) running it."""

    start: str
    poller_pid: int | None = None
    poller_start: str | None = None

    @classmethod
    def mine(cls, start: str) -> _Marker:
        pid = os.getpid()
        return cls(start, pid, start_time(pid))

    @classmethod
    def read(cls, text: str) -> _Marker:
        """A marker as written; a bare start time (older pollers) names no poller."""
        try:
            data = json.loads(text)
        except ValueError:
            return cls(text.strip())
        if not isinstance(data, dict):
            return cls(text.strip())
        pid, start = data.get("poller_pid"), data.get("poller_start")
        return cls(
            str(data.get("start", "")),
            pid if isinstance(pid, int) else None,
            start if isinstance(start, str) else None,
        )

    def text(self) -> str:
        return json.dumps(
            {"start": self.start, "poller_pid": self.poller_pid, "poller_start": self.poller_start}
        )

    def poller_alive(self) -> bool:
        """Is the poller that wrote this still running (the same process, not a pid reused)?"""
        if self.poller_pid is None or self.poller_start is None:
            return False
        return start_time(self.poller_pid) == self.poller_start


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Capture(asyncio.SubprocessProtocol):
    """Collects output as it arrives and says when the leader exits, whoever holds the pipes.

    (asyncio's Process.wait() only returns once every pipe is closed, so a grandchild holding
    stdout would hide the leader's exit; the protocol's process_exited does not wait.)
    """

    def __init__(
        self, cap: int, keep: int, merged: bool = False, on_line: OnLine | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        self.cap, self.keep, self.merged = cap, keep, merged
        self.out, self.err = bytearray(), bytearray()
        self.out_total = 0
        self.exited: asyncio.Future[None] = loop.create_future()
        self.eof = {fd: loop.create_future() for fd in ((1,) if merged else (1, 2))}
        self.last_output = time.monotonic()  # the CLI's last sign of life
        self.on_line = on_line
        self._line = bytearray()
        self._long = False  # inside a line longer than LINE_MAX: skipped to its end

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        self.last_output = time.monotonic()
        if fd == 1 and not self.merged:
            self.out_total += len(chunk)
            if len(self.out) < self.cap:
                self.out += chunk[: self.cap - len(self.out)]
            if self.on_line is not None:
                self._lines(chunk)
        else:
            self.err += chunk
            if len(self.err) > self.keep:
                del self.err[: len(self.err) - self.keep]

    def _lines(self, chunk: bytes) -> None:
        """Hand every complete stdout line to `on_line` (a reader's error stops the
        reading, never the run)."""
        *complete, rest = chunk.split(b"\n")
        for part in complete:
            too_long = self._long or len(self._line) + len(part) > LINE_MAX
            line = b"" if too_long else bytes(self._line + part)
            self._line.clear()
            self._long = False
            if too_long:
                continue
            try:
                assert self.on_line is not None
                self.on_line(line)
            except Exception:
                self.on_line = None
                return
        self._line += rest
        if len(self._line) > LINE_MAX:
            self._line.clear()
            self._long = True

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        fut = self.eof.get(fd)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _record(state_dir: Path | None, pgid: int) -> Path | None:
    if state_dir is None:
        return None
    start = start_time(pgid)
    if start is None:
        return None
    marker = state_dir / str(pgid)
    with contextlib.suppress(OSError):
        marker.write_text(_Marker.mine(start).text())
        return marker
    return None


_Spawn = tuple[asyncio.SubprocessTransport, _Capture]


async def _spawned(
    spawn: asyncio.Task[_Spawn], name: str
) -> tuple[asyncio.SubprocessTransport, _Capture, asyncio.CancelledError | None]:
    """The started CLI, and the cancellation that arrived while it was being started.

    A cancel must not reach the spawn itself: asyncio's clean-up of a cancelled spawn kills
    the leader only and then waits for every pipe to close, so a grandchild that holds
    stdout keeps it (and the poller's shutdown) waiting and survives. The spawn is shielded
    and awaited to its end however often we are cancelled; the caller then kills the group."""
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            transport, capture = await asyncio.shield(spawn)
        except asyncio.CancelledError as e:
            if spawn.cancelled():  # the spawn itself was cancelled (the loop is closing)
                raise
            cancelled = e
            continue
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            if cancelled is not None:
                raise cancelled from None
            raise SpawnError(f"cannot start {name!r}: {e}") from e
        return transport, capture, cancelled


async def _kill_and_reap(pgid: int, capture: _Capture) -> None:
    """SIGKILL the whole group (the leader with it) and wait for the leader's exit.

    Not `transport.kill()` as well: Popen polls before it signals, and that reaps a leader
    already dead behind the child watcher's back, which then reports exit code 255 (with a
    warning) instead of -9."""
    _killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.shield(capture.exited)


async def _watch(
    cap_: _Capture, deadline: float, stall: float | None, cancel: asyncio.Event | None = None
) -> str:
    """Wait for the leader's exit: `exited`, or `timeout` at `deadline`, or `stalled` once
    `stall` seconds pass with no output, or `cancelled` once `cancel` is set (whichever
    comes first)."""
    cancelled = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    waiting: set[asyncio.Future[Any]] = {cap_.exited}
    if cancelled is not None:
        waiting.add(cancelled)
    try:
        while True:
            if cap_.exited.done():
                return "exited"
            if cancel is not None and cancel.is_set():
                return "cancelled"
            now = time.monotonic()
            wait = deadline - now
            if stall is not None:
                quiet_until = cap_.last_output + stall
                if quiet_until <= now and now < deadline:
                    return "stalled"
                wait = min(wait, quiet_until - now)
            if wait <= 0:
                return "timeout"
            await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if cancelled is not None:
            cancelled.cancel()


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
    merged: bool = False,
    on_line: OnLine | None = None,
    stall: float | None = None,
    cancel: asyncio.Event | None = None,
) -> RunOutcome:
    """Run `argv` to completion, or until `timeout`, or until it has shown no sign of life
    (no output on stdout or stderr) for `stall` seconds, or until `cancel` is set; returns
    within timeout + grace (+0.5 s), and within grace (+0.5 s) of a cancel. A cancel stops
    the process group as a timeout does: SIGTERM, then SIGKILL after `grace`. `on_line`
    gets every complete stdout line as it arrives. `merged`: stderr
    goes to stdout, and the tail of both is kept as `stderr_tail` (a setup or check step,
    whose last lines say what went wrong)."""
    started, t0 = time.time(), time.monotonic()
    loop = asyncio.get_running_loop()
    spawn = loop.create_task(
        loop.subprocess_exec(
            lambda: _Capture(cap, stderr_keep, merged, on_line),
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    )
    transport, cap_, cancelled = await _spawned(spawn, argv[0])
    pgid = transport.get_pid()  # leader of its own session and group
    if cancelled is not None:  # a shutdown while it started: nothing of it may stay
        try:
            await _kill_and_reap(pgid, cap_)
        finally:
            transport.close()
        raise cancelled
    marker = _record(state_dir, pgid)
    stdin_pipe = transport.get_pipe_transport(0)
    if stdin_pipe is not None:
        # Buffered by the transport, written as the CLI reads; a CLI that exits without
        # reading it is not an error.
        with contextlib.suppress(OSError):
            stdin_pipe.write(stdin)  # type: ignore[attr-defined]
            stdin_pipe.close()
    timed_out, stalled, task_cancelled = False, None, False
    try:
        ended = await _watch(cap_, t0 + timeout, stall, cancel)
        if ended != "exited":
            timed_out, task_cancelled = ended != "cancelled", ended == "cancelled"
            stalled = stall if ended == "stalled" else None
            _killpg(pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(cap_.exited), grace)
            except TimeoutError:
                _killpg(pgid, signal.SIGKILL)
                await cap_.exited
        _killpg(pgid, signal.SIGKILL)  # stragglers of the group: nothing of the task survives
        await asyncio.wait(set(cap_.eof.values()), timeout=DRAIN_AFTER_EXIT)
    finally:
        if not cap_.exited.done():  # cancelled (shutdown) or an unexpected error
            await _kill_and_reap(pgid, cap_)
        returncode = transport.get_returncode()
        transport.close()
        if marker is not None:
            marker.unlink(missing_ok=True)
    ended_at = time.time()
    return RunOutcome(
        returncode=returncode,
        timed_out=timed_out,
        stdout=bytes(cap_.out),
        stdout_bytes=cap_.out_total,
        stderr_tail=bytes(cap_.err),
        started=started,
        ended=ended_at,
        duration=time.monotonic() - t0,
        stalled=stalled,
        time_limit=timeout,
        cancelled=task_cancelled,
    )
