"""The subprocess runner with real processes: timeouts, process groups, drained pipes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from poller import runner
from tests.support.poller_harness import alive

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


def gone(pid: int, within: float = 1.0) -> bool:
    """SIGKILL is delivered at once but the process needs a moment to die."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _run(argv: list[str], stdin: bytes = b"", **kw: float) -> runner.RunOutcome:
    opts = {"timeout": 10.0, "grace": 1.0, "cap": 1 << 20, **kw}
    return asyncio.run(
        runner.run(argv, stdin, timeout=opts["timeout"], grace=opts["grace"], cap=int(opts["cap"]))
    )


def test_stdin_stdout_stderr_exit_code() -> None:
    o = _run(["sh", "-c", "cat; echo oops >&2; exit 4"], b"prompt")
    assert (o.returncode, o.stdout, o.stderr_tail, o.timed_out) == (4, b"prompt", b"oops\n", False)


def test_big_stdin_to_a_cli_that_never_reads_it() -> None:
    o = _run(["sh", "-c", "echo done"], b"x" * 5_000_000)
    assert o.returncode == 0 and o.stdout == b"done\n"


def test_huge_output_is_capped_and_counted() -> None:
    o = _run(["sh", "-c", "head -c 5000000 /dev/zero; head -c 100000 /dev/zero >&2"], cap=1000)
    assert len(o.stdout) == 1000 and o.stdout_bytes == 5_000_000 and o.stdout_truncated
    assert len(o.stderr_tail) == 8 * 1024


def test_grandchild_holding_stdout_does_not_outlive_the_timeout(tmp_path: Path) -> None:
    """A CLI that ignores SIGTERM and leaves a grandchild holding stdout: back by timeout+grace."""
    pidfile = tmp_path / "pid"
    script = f"trap '' TERM; sleep 300 & echo $! > {pidfile}; echo started; sleep 300"
    t0 = time.monotonic()
    o = _run(["sh", "-c", script], timeout=1.0, grace=1.0)
    took = time.monotonic() - t0
    assert o.timed_out and o.returncode == -9
    assert took < 2.0 + runner.DRAIN_AFTER_EXIT, took
    assert o.stdout == b"started\n"
    assert gone(int(pidfile.read_text()))


def test_grandchild_left_behind_after_a_normal_exit_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    o = _run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo ok"])
    assert o.returncode == 0 and o.stdout == b"ok\n" and time.monotonic() - t0 < 2
    assert gone(int(pidfile.read_text()))


def test_cancel_kills_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def go() -> None:
        t = asyncio.create_task(
            runner.run(
                ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; sleep 300"],
                b"",
                timeout=60,
                grace=1,
                cap=10,
            )
        )
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(go())
    assert gone(int(pidfile.read_text()))


class _SlowPipesLoop(asyncio.SelectorEventLoop):
    """An event loop that connects a child's output pipes only once `go_on` is set: under
    load, the window in which the CLI already runs (and may have forked) while the spawn
    that started it has not returned yet."""

    def __init__(self) -> None:
        super().__init__()
        self.connecting = asyncio.Event()
        self.go_on = asyncio.Event()

    async def connect_read_pipe(
        self, protocol_factory: Callable[[], _P], pipe: Any
    ) -> tuple[asyncio.ReadTransport, _P]:
        self.connecting.set()
        await self.go_on.wait()
        return await super().connect_read_pipe(protocol_factory, pipe)


def test_cancel_during_the_spawn_kills_the_group_and_returns(tmp_path: Path) -> None:
    """A shutdown that cancels the run while the spawn still connects its pipes: the run
    waits for the spawn, kills the whole group (the grandchild holding stdout too) and
    re-raises at once, instead of waiting for every pipe to close (asyncio's own clean-up
    of a cancelled spawn kills the leader only, then waits for the grandchild's 300 s)."""
    pidfile = tmp_path / "pid"
    script = f"sleep 300 & echo $! > {pidfile}; sleep 300"

    async def go() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, _SlowPipesLoop)
        t = asyncio.create_task(runner.run(["sh", "-c", script], b"", timeout=60, grace=1, cap=10))
        await loop.connecting.wait()
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        t.cancel()
        await asyncio.sleep(0)  # the cancellation lands inside the spawn
        loop.go_on.set()
        done, _ = await asyncio.wait({t}, timeout=10)
        if not done:  # the bug: clean up what it left, then say so
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
            await asyncio.wait({t}, timeout=10)
        return bool(done), t.cancelled()

    with asyncio.Runner(loop_factory=_SlowPipesLoop) as r:
        returned, cancelled = r.run(go())
    assert returned, "run() did not return within 10 s of a cancel during the spawn"
    assert cancelled
    assert gone(int(pidfile.read_text()))


def test_cannot_start() -> None:
    with pytest.raises(runner.SpawnError):
        _run(["/nonexistent/cli"])


def test_orphans_recorded_and_killed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.setsid()
        os.execvp("sleep", ["sleep", "300"])
    time.sleep(0.1)
    start = runner.start_time(pid)
    assert start is not None
    (state / str(pid)).write_text(start)
    (state / "99999999").write_text("1")  # stale entry for a process that is gone
    assert runner.kill_orphans(state) == [pid]
    os.waitpid(pid, 0)
    assert list(state.iterdir()) == []


def test_orphan_cleanup_leaves_a_live_pollers_cli_alone(tmp_path: Path) -> None:
    """A marker names the poller running the CLI: while that poller lives (a second
    instance shares the state dir), its CLI is no orphan; once it is gone, it is."""
    state = tmp_path / "state"
    state.mkdir()
    cli = subprocess.Popen(["sleep", "300"], start_new_session=True)
    poller = subprocess.Popen(["sleep", "300"])  # stands for the recording poller
    try:
        time.sleep(0.1)
        marker = {
            "start": runner.start_time(cli.pid),
            "poller_pid": poller.pid,
            "poller_start": runner.start_time(poller.pid),
        }
        (state / str(cli.pid)).write_text(json.dumps(marker))
        assert runner.kill_orphans(state) == []
        assert cli.poll() is None and (state / str(cli.pid)).exists()
        poller.kill()
        poller.wait()
        assert runner.kill_orphans(state) == [cli.pid]
        assert cli.wait(5) == -9 and list(state.iterdir()) == []
    finally:
        for p in (cli, poller):
            p.kill()
            p.wait()


def _run_async(argv: list[str], **kw: object) -> runner.RunOutcome:
    async def go() -> runner.RunOutcome:
        return await runner.run(argv, b"", timeout=30, grace=1, cap=1 << 20, **kw)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_a_cli_silent_for_the_stall_timeout_is_killed_as_stalled(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f"echo started; sleep 60 & echo $! > {pidfile}; wait"]
    t0 = time.monotonic()
    o = _run_async(argv, stall=0.5)
    assert time.monotonic() - t0 < 3
    assert (o.timed_out, o.stalled, o.stdout) == (True, 0.5, b"started\n")
    assert gone(int(pidfile.read_text()))  # its whole group


def test_output_on_stdout_or_stderr_keeps_a_cli_alive() -> None:
    steady = "for i in 1 2 3 4 5 6; do echo $i; echo e >&2; sleep 0.2; done"
    o = _run_async(["sh", "-c", steady], stall=0.5)  # 1.2 s in all, never 0.5 s silent
    assert (o.returncode, o.timed_out, o.stalled) == (0, False, None)


def test_every_stdout_line_reaches_on_line_as_it_comes_and_huge_ones_are_skipped() -> None:
    lines: list[bytes] = []
    huge = runner.LINE_MAX + 10
    script = (
        "import sys; w = sys.stdout.write; w('a'); sys.stdout.flush(); w('b\\nc\\n');"
        f"w('x' * {huge} + '\\n'); w('d\\ne')"
    )
    o = _run_async([sys.executable, "-c", script], on_line=lines.append)
    assert lines == [b"ab", b"c", b"d"]  # the last line never ended: not a complete event
    assert o.stdout_bytes == len("ab\nc\n") + huge + 1 + len("d\ne")


def test_a_reader_that_raises_stops_reading_not_the_run() -> None:
    def broken(line: bytes) -> None:
        raise ValueError(line)

    o = _run_async(["sh", "-c", "echo one; echo two"], on_line=broken)
    assert (o.returncode, o.stdout) == (0, b"one\ntwo\n")
