"""One supervised poller process, kept running the way a unit with `Restart=always` is:
restarted after every exit with a growing delay, a crash loop reported rather than hidden,
stopped like `KillMode=mixed` (SIGTERM to the poller, which drains: its `TimeoutStopSec`,
the worker's drain_timeout + 30 s, to finish running tasks and hand back the rest; then
SIGKILL to whatever is left in its process group).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fleetctl.local.workers import Launch

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0  # a run this long resets the delay
CRASH_LOOP_EXITS = 3  # this many exits ...
CRASH_LOOP_WINDOW = 60.0  # ... within this many seconds is a crash loop

Say = Callable[[str, str], None]  # (worker id, line) -> console


def die_with_parent() -> None:
    """In the child: SIGTERM when the supervisor dies, so a killed supervisor leaves no
    poller or server behind (PR_SET_PDEATHSIG; it follows the thread that forks, so start
    children from the supervisor's main thread)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def spawn_logged(
    argv: list[str], log_path: Path, *, cwd: Path | None = None, tied: bool = False
) -> subprocess.Popen[bytes]:
    """A process in a session of its own (a terminal's Ctrl-C reaches only the supervisor),
    its output appended to `log_path`; `tied`: it dies with the supervisor."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent if tied else None,
        )


@dataclass
class Child:
    launch: Launch
    log_path: Path
    say: Say
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    exits: list[tuple[float, int]] = field(default_factory=list)
    delay: float = BACKOFF_FIRST
    next_start: float = 0.0
    in_crash_loop: bool = False
    stop_deadline: float | None = None  # monotonic: SIGTERM sent, SIGKILL due then
    _reader: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        return self.launch.worker_id

    @property
    def restarts(self) -> int:
        return len(self.exits)

    def start(self) -> None:
        """Must be called from the supervisor's main thread (the parent-death signal follows
        the thread that forks)."""
        self.launch.cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            list(self.launch.argv),
            env=dict(self.launch.env),
            cwd=self.launch.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.started_at = time.monotonic()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=self._copy, args=(self.proc.stdout,), name=f"log-{self.worker_id}", daemon=True
        )
        self._reader.start()

    def _copy(self, stream: IO[bytes]) -> None:
        with self.log_path.open("ab") as log:
            for raw in stream:
                log.write(raw)
                log.flush()
                self.say(self.worker_id, raw.decode(errors="replace").rstrip("\n"))

    def poll(self, now: float) -> None:
        """Notice an exit and schedule the restart; restart when its time has come."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return
            self._reap()
            ran = now - self.started_at
            self.delay = BACKOFF_FIRST if ran >= HEALTHY_AFTER else self.delay
            self.exits.append((now, code))
            recent = [t for t, _ in self.exits if now - t <= CRASH_LOOP_WINDOW]
            self.next_start = now + self.delay
            note = f"exited with {code} after {ran:.1f} s; restarting in {self.delay:.1f} s"
            if len(recent) >= CRASH_LOOP_EXITS:
                if not self.in_crash_loop:
                    note = (
                        f"crash loop: exited {len(recent)} times in {CRASH_LOOP_WINDOW:.0f} s "
                        f"(last exit code {code}); still restarting, every "
                        f"{self.delay:.1f} s at most {BACKOFF_MAX:.0f} s; see {self.log_path}"
                    )
                self.in_crash_loop = True
            else:
                self.in_crash_loop = False
            self.say(self.worker_id, f"supervisor: {note}")
            self.delay = min(self.delay * 2, BACKOFF_MAX)
            return
        if now >= self.next_start:
            self.start()

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # KillMode=mixed: the rest of the group
        if self._reader is not None:
            self._reader.join(2)
        self.proc = None

    def terminate(self, grace: float | None = None) -> None:
        """SIGTERM to the poller only: it stops fetching and drains; SIGKILL is due `grace`
        seconds later (default: its stop timeout). No restart after it."""
        self.next_start = float("inf")
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        wait = self.launch.stop_timeout if grace is None else grace
        self.stop_deadline = time.monotonic() + wait

    def stopped(self, now: float) -> bool:
        """After `terminate`: has it exited (or been killed, its deadline passed)? Reaps it."""
        if self.proc is None:
            return True
        if self.proc.poll() is None and now < (self.stop_deadline or now):
            return False
        self._reap()
        return True

    def stop(self, grace: float | None = None) -> None:
        self.terminate(grace)
        while not self.stopped(time.monotonic()):
            time.sleep(0.05)
