"""A real terminal for tests where the terminal matters (widths, live views, Ctrl-C): a tmux
server of the test's own (its own socket, never the user's), one window of a fixed size, and
what it shows, read back as text."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


class Tmux:
    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        width: int = 80,
        height: int = 50,
    ) -> None:
        """Start `argv` in a fresh window of `width` x `height`; the pane stays open after it
        exits (so its last screen and its exit code can be read)."""
        command = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv])
        self.close()  # one window at a time: the previous one's server goes
        self._tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(cwd),
            f"{command}; echo EXIT=$?; sleep 600",
        )
        self._tmux("set-option", "-g", "remain-on-exit", "on")

    def screen(self) -> str:
        """What the window shows now, wrapped lines joined (-J), so a line longer than the
        window shows as one long line."""
        return self._tmux("capture-pane", "-p", "-J")

    def lines(self) -> list[str]:
        """The window's rows as shown (not joined): each at most the window's width."""
        return self._tmux("capture-pane", "-p").splitlines()

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def wait_for(self, found: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if found(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"not shown within {timeout} s:\n{text}")
            time.sleep(0.1)

    def close(self) -> None:
        if self.socket.exists():
            subprocess.run(
                ["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, check=False
            )
            self.socket.unlink(missing_ok=True)


@contextmanager
def tmux(where: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux (apt-get install tmux; ./dev test installs it as root)")
    t = Tmux(where / "tmux.sock")
    try:
        yield t
    finally:
        t.close()
