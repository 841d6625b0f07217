"""`fleetctl status`, `logs -f` and `dashboard` against simulated hosts: the bus through an SSH
forward as fleet-admin (the dashboard's as fleet-dashboard), the hosts' units from the same
observation as a plan, journald over SSH."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
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


def _api(
    env: FleetEnv, path: str, ready: Callable[[Any], bool], port: int = 8088, timeout: float = 60
) -> Any:
    """GET the dashboard's `path` on the control machine until `ready` says its answer is."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        argv = env.net.lan_argv(["curl", "-s", "-m", "10", f"http://127.0.0.1:{port}{path}"])
        last = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
        if last.startswith(("{", "<")) and ready(json.loads(last) if last[0] == "{" else last):
            return json.loads(last) if last[0] == "{" else last
        time.sleep(0.5)
    raise AssertionError(f"{path}: not ready in {timeout}s: {last[:2000]}")


def test_the_dashboard_reaches_the_fleet_through_an_ssh_forward(fleet_env: FleetEnv) -> None:
    """`fleetctl dashboard` on the control machine with the fleet's files only (no --server,
    no local fleet): the bus through an SSH forward to the broker as fleet-dashboard, and
    the hosts' units looked at over SSH in the background, as `fleetctl status` shows them."""
    dash = fleet_env.popen("dashboard")
    try:
        looked = _api(fleet_env, "/api/status", lambda b: bool(b["hosts"]))
        args = ("task", "send", "dash board", "--to", "cmd-c", "--id", "e2e-dash", "--wait")
        sent = fleet_env.fleetctl(*args)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        rows = _api(fleet_env, "/api/tasks?since=1h", lambda b: "e2e-dash" in str(b))["tasks"]
        row = next(r for r in rows if r["task_id"] == "e2e-dash")
        assert row["targets"] == [
            {"worker_id": "cmd-c", "state": "completed", "unsolicited": False}
        ]
        answers = _api(fleet_env, "/api/tasks/e2e-dash", lambda b: bool(b.get("results")))
        assert [(r["worker_id"], r["status"]) for r in answers["results"]] == [
            ("cmd-c", "completed")
        ]
        page = _api(fleet_env, "/status", lambda html: "data-host=" in html)
    finally:
        dash.terminate()
        _, errors = dash.communicate(timeout=20)
    code, cli = status(fleet_env)
    assert code == 0, cli["problems"]
    assert (looked["local"], looked["hosts_observed"]) == (False, True)
    assert looked.keys() == cli.keys()
    assert looked["hosts"] == cli["hosts"], errors  # every host reachable, each unit active
    units = {u["unit"]: u["state"] for h in looked["hosts"] for u in h["units"]}
    assert units["cmd-a-poller.service"] == units["cmd-c-poller.service"] == "active"
    assert {w["worker_id"]: w["state"] for w in looked["workers"]} == {
        "cmd-a": "idle",
        "cmd-c": "idle",
    }
    assert f'<tr data-host="{NODES[0]}" data-reachable="yes">' in page
    assert 'data-unit="cmd-a-poller.service" data-status="active"' in page


def test_the_dashboard_says_which_host_it_cannot_reach(fleet_env: FleetEnv, tmp_path: Path) -> None:
    """A host whose key does not match is not reachable: its row and a problem say why, as
    `fleetctl status` would; the bus (through the broker) and the other hosts are shown."""
    from tests.support.simhosts import _ed25519_keypair

    _, other = _ed25519_keypair("impostor")
    address = fleet_env.net.hosts[NODES[1]].address
    impostor = " ".join(other.split()[:2])
    lines = fleet_env.net.known_hosts.read_text().splitlines()
    bad = tmp_path / "known_hosts"
    bad.write_text(
        "".join(
            f"{address} {impostor}\n" if line.startswith(address + ",") else line + "\n"
            for line in lines
        )
    )
    dash = fleet_env.popen("dashboard", "--port", "8089", "--known-hosts", str(bad))
    try:
        looked = _api(fleet_env, "/api/status", lambda b: bool(b["hosts"]), port=8089)
        page = _api(fleet_env, "/status", lambda html: "data-host=" in html, port=8089)
    finally:
        dash.terminate()
        dash.communicate(timeout=20)
    hosts = {h["name"]: h for h in looked["hosts"]}
    assert hosts[NODES[0]]["reachable"] is True
    assert hosts[NODES[1]]["reachable"] is False
    assert "host key mismatch" in hosts[NODES[1]]["error"]
    assert f"host {NODES[1]}: not reachable ({hosts[NODES[1]]['error']})" in looked["problems"]
    assert looked["broker"]["reachable"] is True
    assert f'<tr data-host="{NODES[1]}" data-reachable="no">' in page
    assert "no: host key mismatch" in page


def test_status_watch_looks_at_the_hosts_in_the_background(fleet_env: FleetEnv) -> None:
    """`status --watch --json`: a line a second from the bus; the hosts once their first look
    (a plan's observation over SSH) ends."""
    watch = fleet_env.popen("status", "--watch", "--json")
    try:
        assert watch.stdout is not None
        deadline = time.monotonic() + 60
        body: dict[str, Any] = {}
        while time.monotonic() < deadline and not body.get("hosts"):
            body = json.loads(watch.stdout.readline())
    finally:
        watch.terminate()
        watch.communicate(timeout=20)
    assert body["hosts_observed"] is True
    units = {u["unit"]: u["state"] for h in body["hosts"] for u in h["units"]}
    assert units["cmd-a-poller.service"] == units["cmd-c-poller.service"] == "active"
