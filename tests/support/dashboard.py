"""A running `fleetctl dashboard` (the real command, in its own process) for tests."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.taskfleet import FLEETCTL, TaskFleet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dashboard:
    url: str  # http://127.0.0.1:PORT
    token: str | None
    process: subprocess.Popen[str]
    log: Path

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)  # type: ignore[arg-type]


@contextmanager
def running_dashboard(tf: TaskFleet, *args: str) -> Iterator[Dashboard]:
    """`fleetctl dashboard` on the task fleet's bus, with fleet-dashboard's creds; the bus
    only (`--no-hosts`: the task fleet's servers.yaml names example addresses no SSH reaches)."""
    assert tf.fleet.dashboard is not None
    port = free_port()
    env = tf.env() | {"FLEETCTL_NATS_CREDS": str(tf.fleet.dashboard.creds_path)}
    log = tf.dir / f"dashboard-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [FLEETCTL, "dashboard", "--port", str(port), "--no-hosts", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        # "dashboard: URL (Ctrl-C stops)", once it has loaded the bus and listens
        while not (
            match := re.search(r"dashboard: (http://\S+?)/(\?token=(\S+))? ", log.read_text())
        ):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        url, token = f"http://127.0.0.1:{port}", match.group(3)
        deadline = time.monotonic() + 20
        while True:
            try:
                headers = {"authorization": f"Bearer {token}"} if token else {}
                httpx.get(url + "/api/scores", timeout=2, headers=headers)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield Dashboard(url, token, process, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
