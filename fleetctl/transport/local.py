"""This machine as a host (servers.yaml address `localhost`): plain subprocesses."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from fleetctl.transport.base import (
    Completed,
    Held,
    LineHandler,
    Transport,
    TransportError,
    split_lines,
)


class LocalHeld(Held):
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._sending = threading.Lock()

    def readline(self) -> bytes:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline()

    def _send(self, data: bytes) -> None:
        if self._proc.stdin:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()

    def _close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class LocalTransport(Transport):
    def __init__(self, name: str) -> None:
        self.name = name

    def run(
        self,
        argv: Sequence[str],
        stdin: bytes = b"",
        *,
        timeout: float | None = None,
        on_line: LineHandler | None = None,
    ) -> Completed:
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as e:
            raise TransportError(self.name, f"cannot run {argv[0]}: {e.strerror}") from None
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise TransportError(self.name, f"{argv[0]} timed out after {timeout}s") from None
        if on_line is not None:
            split_lines(bytearray(out), on_line)
        return Completed(proc.returncode, out, err)

    def put(self, local: Path, remote: str) -> None:
        target = Path(remote)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(local, target)

    def hold(self, argv: Sequence[str]) -> Held:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        return LocalHeld(proc)

    @contextlib.contextmanager
    def forward(self, host: str, port: int) -> Iterator[int]:
        yield port
