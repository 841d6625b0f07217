"""The small interface every transport offers: run argv with stdin, copy a file, keep a
process open (the host lock), forward a port (the JetStream API on the broker)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path


class TransportError(Exception):
    """A host could not be reached or a command could not be run; names the host."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class HostKeyError(TransportError):
    """The host presented a key other than the one known or pinned for it."""


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: bytes = field(repr=False)
    stderr: bytes = field(repr=False)


class Held(ABC):
    """A process kept running on the host until `close()` (or until fleetctl dies).

    `keep_alive` sends it a byte every `interval` seconds from a background thread, so the
    process can tell a live fleetctl from a broken network (see hostside/lock.py)."""

    _stop: threading.Event | None = None
    _sending: threading.Lock

    @abstractmethod
    def readline(self) -> bytes: ...

    @abstractmethod
    def _send(self, data: bytes) -> None: ...

    def send(self, data: bytes) -> None:
        """Whole writes only: the heartbeat thread and requests share the channel."""
        with self._sending:
            self._send(data)

    @abstractmethod
    def _close(self) -> None: ...

    def keep_alive(self, interval: float) -> None:
        stop = self._stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.send(b"\n")
                except (OSError, EOFError):
                    return

        threading.Thread(target=beat, daemon=True).start()

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        self._close()


LineHandler = Callable[[bytes], None]


class Transport(ABC):
    name: str

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        stdin: bytes = b"",
        *,
        timeout: float | None = None,
        on_line: LineHandler | None = None,
    ) -> Completed:
        """Run argv (never through a local shell), feed stdin, wait; `on_line` sees stdout lines
        as they arrive."""

    @abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to `remote` (a staging path; the agent moves it into place)."""

    @abstractmethod
    def hold(self, argv: Sequence[str]) -> Held: ...

    @abstractmethod
    def forward(self, host: str, port: int) -> AbstractContextManager[int]:
        """A local port that reaches host:port as seen from the remote host."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection."""


def split_lines(buffer: bytearray, on_line: LineHandler) -> None:
    """Hand every complete line in `buffer` to `on_line`, keeping the incomplete rest."""
    while (cut := buffer.find(b"\n")) >= 0:
        on_line(bytes(buffer[:cut]))
        del buffer[: cut + 1]


def chunks(data: bytes, size: int = 1 << 15) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
