"""When a lease's holder counts as dead here, and how a held lease is read (pure logic: the
bus side is tests/integration/test_poller_lease.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from poller import config, lease, runner

BASE = {"WORKER_ID": "w1", "NATS_URL": "nats://127.0.0.1:4222", "MODEL_BACKEND": "claude"}


def _leases(tmp_path: Path) -> lease.Leases:
    return lease.Leases(config.load({**BASE, "WORK_BASE": str(tmp_path)}), js=None, ttl=30)


def _held(value: dict[str, Any]) -> lease.Held:
    return lease.Held("h", 30.0, 7, value)


def test_only_a_holder_that_died_on_this_machine_in_our_state_dir_is_gone(
    tmp_path: Path,
) -> None:
    leases = _leases(tmp_path)
    here = {"machine": lease.machine_id(), "state_dir": leases.state_dir}
    dead = subprocess.Popen(["true"])
    dead.wait()
    was = {"pid": dead.pid, "pid_start": "1"}  # no such process (or a later one)
    assert leases.gone(_held(here | was))
    alive = {"pid": os.getpid(), "pid_start": runner.start_time(os.getpid())}
    assert not leases.gone(_held(here | alive))  # running (frozen would count as running)
    assert not leases.gone(_held(here | was | {"machine": "other-boot/pid:[1]"}))
    assert not leases.gone(_held(here | was | {"state_dir": "/elsewhere"}))
    assert not leases.gone(_held(here | {"pid": "12", "pid_start": "1"}))
    assert not leases.gone(lease.Held("h", 30.0, 7, None))  # unreadable: wait it out


def test_a_lease_names_its_key_by_worker_and_task(tmp_path: Path) -> None:
    leases = _leases(tmp_path)
    assert leases.stream == "KV_AF_LEASES"
    assert leases.subject("t-1") == "$KV.AF_LEASES.w1.t-1"


def test_ttl_header_as_written() -> None:
    assert lease._ttl_seconds("30s") == 30.0
    assert lease._ttl_seconds("12") == 12.0
    assert lease._ttl_seconds(None) == 0.0
    assert lease._ttl_seconds("never") == 0.0
