"""`fleetctl status` and `logs -f` against simulated hosts: the bus through an SSH forward as
fleet-admin, the hosts' units from the same observation as a plan, journald over SSH."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet_env import NODES, FleetEnv, simulated_fleet, worker

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    workers = [worker("cmd-a", NODES[0]), worker("cmd-c", NODES[1])]
    with simulated_fleet(tmp_path_factory.mktemp("e2e-status"), workers) as env:
        done = env.fleetctl("apply", "--all", "--issue-creds", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        yield env


def status(env: FleetEnv, *args: str) -> tuple[int, dict[str, Any]]:
    done = env.fleetctl("status", "--json", *args)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_unit_down_on_a_host_needs_a_human(fleet_env: FleetEnv) -> None:
    code, body = status(fleet_env, "--check")
    assert code == 0, body["problems"]
    assert {w["worker_id"]: w["state"] for w in body["workers"]} == {
        "cmd-a": "idle",
        "cmd-c": "idle",
    }
    hosts = {h["name"]: h for h in body["hosts"]}
    assert all(h["reachable"] for h in hosts.values()), hosts
    units = {u["unit"]: u["state"] for u in hosts[NODES[0]]["units"]}
    assert units["cmd-a-poller.service"] == "active"
    fleet_env.sh(NODES[0], "systemctl stop cmd-a-poller.service")
    try:
        code, body = status(fleet_env, "--check")
        assert code == 1
        units = {u["unit"]: u["state"] for h in body["hosts"] for u in h["units"]}
        assert units["cmd-a-poller.service"].startswith("stopped"), units
        assert (
            f"host {NODES[0]}: cmd-a-poller.service {units['cmd-a-poller.service']}"
            in (body["problems"])
        )
        assert "worker cmd-a: not heartbeating" in body["problems"]
    finally:
        fleet_env.sh(NODES[0], "systemctl start cmd-a-poller.service")


def test_logs_follow_a_worker_on_its_host(fleet_env: FleetEnv, tmp_path: Path) -> None:
    follow = fleet_env.popen("logs", "cmd-c", "-f", "-n", "0")
    try:
        time.sleep(1.0)  # journalctl -f is reading from the end
        args = ("task", "send", "one two", "--to", "cmd-c", "--id", "e2e-logs", "--wait")
        sent = fleet_env.fleetctl(*args)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert follow.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and " task_done " not in line:
            line = follow.stdout.readline()
        assert "task_done task_id=e2e-logs status=completed exit_code=0" in line, line
    finally:
        follow.terminate()
        follow.wait(10)
    last = fleet_env.fleetctl("logs", "cmd-c", "-n", "2")
    assert last.returncode == 0, last.stderr
    assert "task_done task_id=e2e-logs" in last.stdout
