"""The host's watchdog as real processes on this machine: the agent program (agent.py,
steps.py, previous.py, as apply sends it) arms it and exits; the watchdog waits for the
confirmation, and without one restores the previous version by itself once it holds the
apply lock. Files under a temporary directory; no systemd unit is touched, so no root."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fleetctl.hostside import watchdog_program
from fleetctl.reconcile import agent_client
from tests.support.hostagent import file_step

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def run_agent(*steps: dict[str, Any]) -> list[dict[str, Any]]:
    program = agent_client.agent_program({"op": "apply", "steps": list(steps)})
    done = subprocess.run(
        [PYTHON, "-I", "-S", "-"], input=program, capture_output=True, timeout=30, check=False
    )
    assert done.stderr == b"", done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def begin(tmp: Path, gen: str, timeout: float) -> dict[str, Any]:
    return {
        "op": "begin_previous",
        "log": str(tmp / "previous.json"),
        "id": gen,
        "confirm": {
            "timeout": timeout,
            "lock": str(tmp / "apply.lock"),
            "program": str(tmp / "watchdog.py"),
            "source": watchdog_program(),
            "journal": str(tmp / "watchdog.log"),
        },
    }


def log_of(tmp: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp / "previous.json").read_text())
    return data


def wait_for(check: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_unconfirmed_the_host_restores_its_previous_version_by_itself(tmp_path: Path) -> None:
    target = tmp_path / "a.conf"
    target.write_bytes(b"v1\n")
    events = run_agent(begin(tmp_path, "g1", 0.5), file_step(target, b"v2\n"))
    assert [e["ok"] for e in events] == [True, True]
    assert target.read_bytes() == b"v2\n"  # the apply's change, until the deadline
    wait_for(lambda: "rolled_back" in log_of(tmp_path))
    assert target.read_bytes() == b"v1\n"
    assert log_of(tmp_path)["generations"] == []
    gone_back = log_of(tmp_path)["rolled_back"]
    assert (gone_back["id"], gone_back["why"]) == (
        "g1",
        "not confirmed within 0.5 s of the apply's last step",
    )
    journal = (tmp_path / "watchdog.log").read_text()
    assert "fleetctl watchdog: rolling back generation g1" in journal
    assert (tmp_path / "watchdog.py").stat().st_mode & 0o777 == 0o700


def test_a_confirmation_in_time_ends_the_watchdog_and_keeps_the_change(tmp_path: Path) -> None:
    target = tmp_path / "a.conf"
    target.write_bytes(b"v1\n")
    run_agent(begin(tmp_path, "g1", 30), file_step(target, b"v2\n"))
    pid = log_of(tmp_path)["generations"][0]["watchdog"]["pid"]
    assert not gone(pid)
    confirm = {"op": "confirm_previous", "log": str(tmp_path / "previous.json"), "id": "g1"}
    assert run_agent(confirm)[0]["said"] == {"confirmed": True}
    wait_for(lambda: gone(pid), 5)
    assert target.read_bytes() == b"v2\n"
    assert log_of(tmp_path)["generations"][0]["state"] == "confirmed"


def test_the_watchdog_waits_for_the_apply_lock_before_it_restores(tmp_path: Path) -> None:
    """An apply still holding the host (its gate, its own rollback) comes first."""
    target = tmp_path / "a.conf"
    target.write_bytes(b"v1\n")
    fd = os.open(tmp_path / "apply.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        run_agent(begin(tmp_path, "g1", 0.2), file_step(target, b"v2\n"))
        time.sleep(1.5)
        assert target.read_bytes() == b"v2\n"
    finally:
        os.close(fd)
    wait_for(lambda: target.read_bytes() == b"v1\n")
    holder = json.loads((tmp_path / "apply.lock").read_text())
    assert holder["owner"] == "fleetctl watchdog"
