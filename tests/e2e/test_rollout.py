"""Rolling applies, rollbacks and the host's own rollback on simulated hosts: real sshd, real
unit files run by a systemctl replacement, real pollers and nats-server, stand-in LLM CLIs.

The tests share one fleet and run in order, each starting from the state the previous one
left, and each ending with the fleet converged again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.fleet_env import NODES, FleetEnv, simulated_fleet

pytestmark = pytest.mark.e2e

NODE1, NODE2 = NODES


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    with simulated_fleet(tmp_path_factory.mktemp("rollout"), _workers()) as env:
        done = env.fleetctl("apply", "--all", "--issue-creds", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        yield env


def _workers() -> list[dict[str, object]]:
    from tests.e2e.fleet_env import worker

    return [worker(w, NODE1) for w in ("cmd-a", "cmd-b")] + [
        worker(w, NODE2) for w in ("cmd-c", "cmd-d")
    ]


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def unit_file(env: FleetEnv, host: str, worker: str) -> str:
    return env.sh(host, f"cat /etc/systemd/system/{worker}-poller.service")


def converged(env: FleetEnv) -> None:
    done = env.fleetctl("plan", "--detailed-exitcode")
    assert done.returncode == 0, done.stdout + done.stderr


def cli_running(env: FleetEnv, host: str) -> bool:
    """A stand-in CLI runs on `host` (a poller is working on a task)."""
    return bool(env.sh(host, "pgrep -f standin.py || true").strip())


def test_apply_says_what_a_restart_waits_for_and_the_task_finishes_once(
    fleet_env: FleetEnv,
) -> None:
    task = f"drain-{uuid.uuid4().hex[:8]}"
    sent = fleet_env.popen(
        "task", "send", 'standin: {"sleep": 6}', "--to", "cmd-a", "--id", task,
        "--wait", "--wait-timeout", "120s", "--json",
    )  # fmt: skip
    wait_for(lambda: cli_running(fleet_env, NODE1), 60, "the task to start")
    fleet_env.set_worker("cmd-a", task_timeout="3m")
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{NODE1}: draining cmd-a: 1 task, up to 3m" in done.stderr
    out, err = sent.communicate(timeout=150)
    assert sent.returncode == 0, out + err
    [result] = json.loads(out)["results"]
    # completed by its first delivery: not killed by the restart, not run again
    assert (result["worker_id"], result["status"], result["attempt"]) == ("cmd-a", "completed", 1)
    converged(fleet_env)


def test_a_failing_batch_is_rolled_back_and_the_rollout_stops(fleet_env: FleetEnv) -> None:
    """worker-node-1 gets a worker whose poller cannot start: its host fails its check, goes
    back to what it had, and worker-node-2's batch is never started."""
    before = {n: fleet_env.sh(n, "cat /var/lib/fleetctl/manifest.json") for n in NODES}
    node2_unit = unit_file(fleet_env, NODE2, "cmd-c")
    env_file = "/etc/fleet/env/cmd-x.env"
    fleet_env.sh(NODE1, f"mkdir -p /etc/fleet/env && echo NATS_CREDS=/nonexistent >{env_file}")
    fleet_env.workers.append(
        {
            "worker_id": "cmd-x",
            "llm": "command",
            "command": ["/usr/local/bin/fake-command"],
            "host": NODE1,
            "env_file": env_file,
        }
    )
    fleet_env.set_worker("cmd-c", task_timeout="4m")
    done = fleet_env.fleetctl(
        "apply", "--all", "--issue-creds", "--yes", "--batch", "1", "--settle", "1"
    )
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert f"{NODE1}: FAILED at check the started units stay up: cmd-x-poller.service is" in text
    assert "NATS_CREDS" in text and "rolled back to its previous version" in text
    assert f"{NODE2}: NOT STARTED: the rollout stopped after batch 1" in text
    assert (
        "1 host(s) failed; 1 of them rolled back to their previous version; 1 not started" in text
    )
    assert not fleet_env.exists(NODE1, "/etc/systemd/system/cmd-x-poller.service")
    assert not fleet_env.exists(NODE1, "/etc/fleet/creds/cmd-x.creds")
    assert fleet_env.sh(NODE1, "id fleet-cmd-x 2>/dev/null || echo absent").strip() == "absent"
    for node in NODES:
        assert fleet_env.sh(node, "cat /var/lib/fleetctl/manifest.json") == before[node]
    assert unit_file(fleet_env, NODE2, "cmd-c") == node2_unit  # untouched
    assert all(fleet_env.active(NODE1, f"{w}-poller.service") for w in ("cmd-a", "cmd-b"))
    # Without the bad worker and with cmd-c's change undone, the worker hosts are as they
    # were: the rollback left nothing behind. The broker's wave passed, so the bus keeps the
    # worker's consumer and credentials until the next apply removes them.
    fleet_env.sh(NODE1, f"rm -f {env_file}")
    fleet_env.delete_worker("cmd-x")
    fleet_env.set_worker("cmd-c", task_timeout="2m")
    plan = fleet_env.fleetctl("plan", "--detailed-exitcode").stdout
    for node in NODES:
        assert (
            f"{node}  " in plan
            and plan.split(f"{node}  ")[1].split("\n")[1].strip() == "no changes"
        ), plan
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    converged(fleet_env)


def test_rollback_shows_its_plan_then_takes_the_host_back(fleet_env: FleetEnv) -> None:
    old = unit_file(fleet_env, NODE2, "cmd-c")
    fleet_env.set_worker("cmd-c", task_timeout="5m")
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert unit_file(fleet_env, NODE2, "cmd-c") != old
    pid = fleet_env.main_pid(NODE2, "cmd-c-poller.service")
    done = fleet_env.fleetctl("rollback", "--host", NODE2, "--yes")
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "back to the version before the one applied" in text
    assert "~ file /etc/systemd/system/cmd-c-poller.service" in text
    assert "~ unit cmd-c-poller.service" in text
    assert "Rollback complete." in text
    assert unit_file(fleet_env, NODE2, "cmd-c") == old
    assert fleet_env.active(NODE2, "cmd-c-poller.service")
    assert fleet_env.main_pid(NODE2, "cmd-c-poller.service") != pid  # restarted onto it
    plan = fleet_env.fleetctl("plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout  # fleet.yaml still asks for the change
    again = fleet_env.fleetctl("rollback", "--host", NODE2, "--yes")
    assert again.returncode == 0 and "Nothing to roll back." in again.stdout
    fleet_env.set_worker("cmd-c", task_timeout="2m")
    converged(fleet_env)


def test_a_host_cut_off_after_its_change_rolls_back_by_itself(fleet_env: FleetEnv) -> None:
    node2 = fleet_env.net.hosts[NODE2]
    old = unit_file(fleet_env, NODE2, "cmd-d")
    manifest = node2.file("/var/lib/fleetctl/manifest.json")
    written = manifest.stat().st_mtime_ns
    fleet_env.extra["rollout"] = {"confirm_timeout": "30s"}
    fleet_env.set_worker("cmd-d", task_timeout="6m")
    proc = fleet_env.popen("apply", "--all", "--yes", "--settle", "3")
    try:
        wait_for(lambda: manifest.stat().st_mtime_ns != written, 120, "worker-node-2's program")
        node2.set_reachable(False)  # activated, not yet confirmed: the link breaks
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert f"{NODE2}: FAILED" in err
        assert "it restores its previous version by itself within 30s" in err
        assert unit_file(fleet_env, NODE2, "cmd-d") != old
        log = node2.file("/var/lib/fleetctl/previous.json")
        wait_for(lambda: "rolled_back" in json.loads(log.read_text()), 120, "its rollback")
    finally:
        node2.set_reachable(True)
        proc.kill()
    assert unit_file(fleet_env, NODE2, "cmd-d") == old
    assert fleet_env.active(NODE2, "cmd-d-poller.service")
    journal = fleet_env.sh(NODE2, "cat /var/lib/fleetctl/watchdog.log")
    assert "not confirmed within 30 s" in journal
    plan = fleet_env.fleetctl("plan", "--detailed-exitcode")
    assert plan.returncode == 2 and "cmd-d-poller.service" in plan.stdout, plan.stdout
    assert "rolled back by itself at " in plan.stdout, plan.stdout
    fleet_env.set_worker("cmd-d", task_timeout="2m")
    del fleet_env.extra["rollout"]
    fleet_env.write()
    converged(fleet_env)
    assert fleet_env.tasks_round_trip(["cmd-c", "cmd-d"])["cmd-d"]["status"] == "completed"
