"""fleetctl plan and apply against simulated hosts: real sshd, real nats-server on the broker,
real autossh tunnels, real unit files run by a systemctl replacement, stand-in LLM CLIs.

The tests share one fleet and run in order, each starting from the state the previous one
left (as an operator's successive pull requests would).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl.artifacts import pollerwheel
from fleetctl.hostside import lock_program
from fleetctl.reconcile.resources.packages import STAGED_NATS
from fleetctl.reconcile.sessions import LOCK_FILE
from tests.e2e.fleet_env import (
    BROKER,
    NODES,
    FleetEnv,
    install_standins,
    prepare_wheelhouse,
)
from tests.support.natsserver import nats_server_binary
from tests.support.simhosts import SimNet, skip_reason

pytestmark = pytest.mark.e2e

WORKERS = ["cmd-a", "cc-b", "cmd-c", "cmd-d"]


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    prepare_wheelhouse()
    base = tmp_path_factory.mktemp("e2e")
    with SimNet(base / "net", [BROKER, *NODES]) as net:
        install_standins(net)
        env = FleetEnv(net, base)
        env.write()
        yield env


def plan_lines(env: FleetEnv, *args: str) -> tuple[int, str]:
    done = env.fleetctl("plan", *args)
    return done.returncode, done.stdout + done.stderr


def test_first_apply_brings_up_the_broker_tunnels_and_every_poller(fleet_env: FleetEnv) -> None:
    done = fleet_env.fleetctl("apply", "--all", "--issue-creds", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet_env.active(BROKER, "nats-server.service")
    for node in NODES:
        assert fleet_env.active(node, "fleet-tunnel.service")
    assert fleet_env.active(NODES[0], "cmd-a-poller.service")
    assert fleet_env.active(NODES[0], "cc-b-poller.service")
    assert fleet_env.active(NODES[1], "cmd-c-poller.service")
    creds = fleet_env.net.hosts[NODES[0]].file("/etc/fleet/creds/cmd-a.creds")
    assert creds.stat().st_mode & 0o777 == 0o600
    results = fleet_env.tasks_round_trip(WORKERS)
    assert sorted(results) == sorted(WORKERS), results
    for wid, result in results.items():
        assert result["worker_id"] == wid
        assert result["status"] == "completed", result
        assert result["poller_version"] == pollerwheel.poller_version()  # the plan's build


def test_task_send_waits_for_results_through_an_ssh_forward_to_the_broker(
    fleet_env: FleetEnv,
) -> None:
    """No --server and no local fleet: the bus is reached over SSH as fleet-publisher."""
    args = ("task", "send", "hello", "--to", "cmd-a", "--to", "cmd-c", "--id", "e2e-1")
    done = fleet_env.fleetctl(*args, "--wait", "--wait-timeout", "60s", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(done.stdout)["results"]
    assert [(r["worker_id"], r["status"], r["host"]) for r in results] == [
        ("cmd-a", "completed", NODES[0]),
        ("cmd-c", "completed", NODES[1]),
    ]
    table = fleet_env.fleetctl("results", "e2e-1")
    assert table.returncode == 0, table.stderr
    assert "cmd-a" in table.stdout and "cmd-c" in table.stdout
    # the publisher recorded whom it sent e2e-1 to, in the bucket the first apply made
    shown = json.loads(fleet_env.fleetctl("results", "e2e-1", "--json").stdout)
    assert [t["worker_id"] for t in shown["record"]["targets"]] == ["cmd-a", "cmd-c"]
    assert [(r["worker_id"], r["unsolicited"]) for r in shown["results"]] == [
        ("cmd-a", False),
        ("cmd-c", False),
    ]
    unknown = fleet_env.fleetctl("results", "e2e-never-sent")
    assert unknown.returncode == 1
    assert "no such task: e2e-never-sent" in unknown.stderr


def test_plan_right_after_apply_has_no_changes(fleet_env: FleetEnv) -> None:
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 0, text
    assert "No changes. The fleet matches its configuration." in text
    again = fleet_env.fleetctl("apply", "--all", "--yes")
    assert again.returncode == 0
    assert "No changes." in again.stdout


def test_ssh_connections_neither_wait_on_acks_nor_hang_on_a_dead_host(
    fleet_env: FleetEnv,
) -> None:
    """TCP_NODELAY (with quick ACKs) removed a 40 ms stall from every connection's handshake
    and first command; TCP_USER_TIMEOUT makes a vanished host fail instead of hang."""
    assert fleet_env.ssh_socket_options() == {"nodelay": 1, "user_timeout_ms": 20_000}


def test_changing_a_model_restarts_only_that_worker(fleet_env: FleetEnv) -> None:
    others = {
        (NODES[0], "cmd-a-poller.service"),
        (NODES[1], "cmd-c-poller.service"),
        (NODES[0], "fleet-tunnel.service"),
        (BROKER, "nats-server.service"),
    }
    before = {u: fleet_env.main_pid(*u) for u in others}
    target = fleet_env.main_pid(NODES[0], "cc-b-poller.service")
    fleet_env.set_worker("cc-b", model="claude-sonnet-4-6")
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text
    assert "~ file /etc/systemd/system/cc-b-poller.service" in text
    assert "~ unit cc-b-poller.service" in text and "restart: cc-b-poller.service changed" in text
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in text
    diff = [line.strip() for line in plan_lines(fleet_env, "--diff")[1].splitlines()]
    assert any(line.startswith("-") and "claude-haiku-4-5" in line for line in diff), diff
    assert any(line.startswith("+") and "claude-sonnet-4-6" in line for line in diff), diff
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet_env.main_pid(NODES[0], "cc-b-poller.service") != target
    assert {u: fleet_env.main_pid(*u) for u in others} == before
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_consumer_drift_on_the_broker_shows_and_is_put_right(fleet_env: FleetEnv) -> None:
    fleet_env.drift_consumer("worker-cmd-a", 300)
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text
    assert "~ consumer AF_TASKS/worker-cmd-a" in text
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_disabling_a_worker_removes_it_and_revokes_its_creds(
    fleet_env: FleetEnv, tmp_path: Path
) -> None:
    old_creds = tmp_path / "cmd-d.creds"
    old_creds.write_bytes(
        fleet_env.net.hosts[NODES[1]].file("/etc/fleet/creds/cmd-d.creds").read_bytes()
    )
    assert fleet_env.broker_accepts(old_creds)
    # Two tasks wait for cmd-d while its poller is stopped; disabling it leaves them unrun.
    fleet_env.sh(NODES[1], "systemctl stop cmd-d-poller.service")
    for text in ("first", "second"):
        sent = fleet_env.fleetctl("task", "send", "--to", "cmd-d", "--id", f"q-{text}", text)
        assert sent.returncode == 0, sent.stdout + sent.stderr
    fleet_env.set_worker("cmd-d", enabled=False)
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text
    assert "- unit cmd-d-poller.service" in text
    assert "- file /etc/fleet/creds/cmd-d.creds" in text
    assert "- consumer AF_TASKS/worker-cmd-d" in text and "2 queued tasks left unrun" in text
    assert "- credentials worker-cmd-d" in text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    # apply made them dead letters (as cmd-d, before revoking it); one is sent on again.
    dead = json.loads(fleet_env.fleetctl("dead", "list", "--worker", "cmd-d", "--json").stdout)
    rows = [r for r in dead["dead"] if r["reason"].startswith("worker removed")]
    assert sorted(r["task_id"] for r in rows) == ["q-first", "q-second"], dead
    replayed = fleet_env.fleetctl("dead", "replay", str(rows[0]["seq"]), "--to", "cmd-c")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert not fleet_env.exists(NODES[1], "/etc/systemd/system/cmd-d-poller.service")
    assert not fleet_env.exists(NODES[1], "/etc/fleet/creds/cmd-d.creds")
    assert fleet_env.active(NODES[1], "cmd-c-poller.service")
    assert fleet_env.revoked("cmd-d")
    assert not fleet_env.broker_accepts(old_creds), "the running broker still lets cmd-d in"
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_moving_a_worker_moves_its_unit_and_creds(fleet_env: FleetEnv) -> None:
    fleet_env.set_worker("cmd-c", host=NODES[0])
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet_env.active(NODES[0], "cmd-c-poller.service")
    assert not fleet_env.exists(NODES[1], "/etc/systemd/system/cmd-c-poller.service")
    assert not fleet_env.exists(NODES[1], "/etc/fleet/creds/cmd-c.creds")
    results = fleet_env.tasks_round_trip(["cmd-c"])
    assert results["cmd-c"]["status"] == "completed"
    again = plan_lines(fleet_env, "--detailed-exitcode")
    assert again[0] == 0, again[1]


def test_deleting_a_worker_removes_it(fleet_env: FleetEnv) -> None:
    fleet_env.delete_worker("cmd-a")
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text
    assert "- unit cmd-a-poller.service" in text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not fleet_env.exists(NODES[0], "/etc/systemd/system/cmd-a-poller.service")
    assert fleet_env.revoked("cmd-a")
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_apply_worker_touches_nothing_outside_that_worker(fleet_env: FleetEnv) -> None:
    fleet_env.set_worker("cc-b", model="claude-opus-4-1")
    fleet_env.set_worker("cmd-c", task_timeout="3m")
    pid_c = fleet_env.main_pid(NODES[0], "cmd-c-poller.service")
    done = fleet_env.fleetctl("apply", "--worker", "cc-b", "--issue-creds", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cmd-c" not in done.stdout
    assert fleet_env.main_pid(NODES[0], "cmd-c-poller.service") == pid_c
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2 and "cmd-c-poller.service" in text and "cc-b-poller" not in text, text
    assert fleet_env.fleetctl("apply", "--all", "--yes").returncode == 0


def test_an_unreachable_host_fails_alone_and_the_next_apply_finishes(fleet_env: FleetEnv) -> None:
    fleet_env.set_worker("cc-b", model="claude-sonnet-4-6")
    fleet_env.workers.append(
        {
            "worker_id": "cmd-e",
            "llm": "command",
            "command": ["/usr/local/bin/fake-command"],
            "host": NODES[1],
        }
    )
    fleet_env.write()
    node2 = fleet_env.net.hosts[NODES[1]]
    # Connected, locked and observed; the broker goes first (a new consumer), and while it
    # does, worker-node-2 drops off the network.
    proc = fleet_env.popen("apply", "--all", "--issue-creds", "--yes")
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("Plan:"):
                node2.set_reachable(False)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        node2.set_reachable(True)
    assert proc.returncode == 1, out + err
    assert f"{NODES[1]}: FAILED" in err
    assert f"{NODES[0]}: ok" in err and f"{BROKER}: ok" in err
    assert "claude-sonnet-4-6" in fleet_env.sh(
        NODES[0], "cat /etc/systemd/system/cc-b-poller.service"
    )
    # worker-node-2 never saw the first apply's connection close: its lock lapses once the
    # heartbeats stop (LEASE), which --lock-wait covers.
    done = fleet_env.fleetctl("apply", "--all", "--yes", "--lock-wait", "45")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet_env.active(NODES[1], "cmd-e-poller.service")
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_a_killed_apply_is_finished_by_the_next(fleet_env: FleetEnv) -> None:
    fleet_env.set_worker("cc-b", model="claude-haiku-4-5")
    fleet_env.set_worker("cmd-e", task_timeout="4m")
    proc = fleet_env.popen("apply", "--all", "--yes")
    import time

    time.sleep(2.5)
    proc.kill()
    proc.wait()
    for node in NODES:
        unit_dir = fleet_env.net.hosts[node].file("/etc/systemd/system")
        assert not [p for p in unit_dir.glob(".*fleetctl-tmp*")], "a half-written file"
    done = fleet_env.fleetctl("apply", "--all", "--yes", "--lock-wait", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_two_applies_do_not_overlap(fleet_env: FleetEnv) -> None:
    """Another apply holds the broker's lock (taken as fleetctl takes it, over SSH)."""
    fleet_env.set_worker("cc-b", model="claude-sonnet-4-6")
    info = json.dumps({"owner": "alice@laptop", "since": "now", "command": "fleetctl apply --all"})
    holder = subprocess.Popen(
        fleet_env.net.ssh_argv(
            BROKER,
            [
                "python3",
                "-c",
                shlex.quote(lock_program()),
                LOCK_FILE,
                shlex.quote(info),
                "0",
                "600",
            ],
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline()) == {"locked": True}
        done = fleet_env.fleetctl("apply", "--all", "--yes")
        assert done.returncode == 1
        assert "another apply holds the lock: fleetctl apply --all by alice@laptop" in done.stderr
        threading.Timer(1.5, holder.communicate, kwargs={"input": b""}).start()
        done = fleet_env.fleetctl("apply", "--all", "--yes", "--lock-wait", "20")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        holder.kill()
        holder.wait()
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_a_wrong_host_key_is_refused(fleet_env: FleetEnv, tmp_path: Path) -> None:
    from tests.support.simhosts import _ed25519_keypair

    _, other = _ed25519_keypair("impostor")
    address = fleet_env.net.hosts[BROKER].address
    bad = tmp_path / "known_hosts"
    lines = fleet_env.net.known_hosts.read_text().splitlines()
    impostor = " ".join(other.split()[:2])
    bad.write_text(
        "".join(
            f"{address} {impostor}\n" if line.startswith(address + ",") else line + "\n"
            for line in lines
        )
    )
    assert impostor in bad.read_text()
    done = fleet_env.fleetctl("plan", "--known-hosts", str(bad))
    assert done.returncode == 1
    assert "host key mismatch" in done.stdout + done.stderr
    assert "SHA256:" in done.stdout + done.stderr


def test_narrowing_the_plan_to_a_worker_host_invents_no_change(fleet_env: FleetEnv) -> None:
    """The broker is not visited and its key is not pinned: the tunnels' known_hosts is
    still what the broker would present, so nothing changes."""
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0
    for node in (BROKER, *NODES):
        code, text = plan_lines(fleet_env, "--host", node, "--detailed-exitcode")
        assert code == 0, text
        assert "known_hosts" not in text
    for worker in ("cc-b", "cmd-c", "cmd-e"):
        code, text = plan_lines(fleet_env, "--worker", worker, "--detailed-exitcode")
        assert code == 0, text


def test_a_unit_that_cannot_start_fails_the_apply_which_says_why_and_rolls_back(
    fleet_env: FleetEnv,
) -> None:
    # An operator's env file that points the poller at creds it cannot read: the unit
    # starts, then exits at once.
    env_file = "/etc/fleet/env/cmd-x.env"
    fleet_env.sh(NODES[0], f"mkdir -p /etc/fleet/env && echo NATS_CREDS=/nonexistent >{env_file}")
    fleet_env.workers.append(
        {
            "worker_id": "cmd-x",
            "llm": "command",
            "command": ["/usr/local/bin/fake-command"],
            "host": NODES[0],
            "env_file": env_file,
        }
    )
    fleet_env.write()
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 1 and "add --issue-creds" in done.stderr, "refused up front"
    assert not fleet_env.exists(NODES[0], "/etc/systemd/system/cmd-x-poller.service")
    done = fleet_env.fleetctl("apply", "--all", "--issue-creds", "--yes", "--settle", "1")
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert f"{NODES[0]}: FAILED at check the started units stay up" in text
    assert "cmd-x-poller.service is" in text and "NATS_CREDS" in text, text
    assert "Apply complete" not in text
    assert "rolled back to its previous version" in text
    # The host went back to what it had: the worker is still to be created.
    assert not fleet_env.exists(NODES[0], "/etc/systemd/system/cmd-x-poller.service")
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text
    assert "+ unit cmd-x-poller.service" in text, text
    fleet_env.sh(NODES[0], f"rm -f {env_file}")
    fleet_env.delete_worker("cmd-x")
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


def test_the_plan_while_nats_server_is_down_says_the_bus_is_not_observed(
    fleet_env: FleetEnv,
) -> None:
    fleet_env.sh(BROKER, "systemctl stop nats-server.service")
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 1, text
    assert "! bus not observed: nats-server.service is installed on broker-host" in text
    assert "+ stream" not in text and "+ consumer" not in text
    assert "~ unit nats-server.service" in text and "start (stopped)" in text, text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet_env.active(BROKER, "nats-server.service")
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0
    assert fleet_env.tasks_round_trip(["cmd-c"])["cmd-c"]["status"] == "completed"


def test_a_nats_server_of_fleet_yamls_choosing_runs_on_the_broker_only(
    fleet_env: FleetEnv,
) -> None:
    """A pull request can add a binary and its sha256 together: the plan names it by its
    hash and never runs it here; apply uploads it and only the broker runs it. Going back
    to the pinned binary is seen although this one prints the pinned version line."""
    real = nats_server_binary()
    assert real is not None
    broker = fleet_env.net.hosts[BROKER]
    # The real server, where the broker's hardened unit can run it: not the control
    # machine's path, which its PrivateTmp hides when the checkout is under /tmp.
    beside = "/opt/fleetctl-e2e/nats-server-real"
    broker.write_file(beside, Path(real).read_bytes(), mode=0o755)
    marker = f"/tmp/fleetctl-e2e-ran-{uuid.uuid4().hex}"
    script = fleet_env.dir / "tools" / "nats-server"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        f'#!/bin/sh\ntouch {marker} 2>/dev/null\necho "wrapper of {beside}" >&2\n'
        f'exec {beside} "$@"\n'
    )
    script.chmod(0o755)
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    chosen = {"path": "tools/nats-server", "sha256": digest}
    fleet_env.extra["nats"] = {"ack_wait": "30s", "server_binary": chosen}
    fleet_env.write()
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text
    assert "~ package nats-server" in text and f"sha256:{digest}" in text, text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not Path(marker).exists()  # never run on this machine
    assert broker.file("/usr/local/bin/nats-server").read_bytes() == script.read_bytes()
    assert fleet_env.active(BROKER, "nats-server.service")
    assert f"wrapper of {beside}" in fleet_env.sh(BROKER, "journalctl -u nats-server.service")
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0  # the broker's copy, by hash
    assert fleet_env.tasks_round_trip(["cmd-c"])["cmd-c"]["status"] == "completed"

    del fleet_env.extra["nats"]
    fleet_env.write()
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    assert code == 2, text  # though it prints the pinned version, it is not the pinned one
    assert "~ package nats-server" in text and "nats-server: v2.15.1" in text, text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    installed = broker.file("/usr/local/bin/nats-server").read_bytes()
    assert (
        hashlib.sha256(installed).hexdigest() == hashlib.sha256(Path(real).read_bytes()).hexdigest()
    )
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0
    assert not Path(marker).exists()


def test_a_nats_server_for_another_cpu_is_refused_and_the_broker_left_alone(
    fleet_env: FleetEnv,
) -> None:
    """A binary whose ELF header says another CPU than the broker's agent reports is
    refused by the plan and by apply, which touch nothing on the broker."""
    here = os.uname().machine
    other, e_machine = ("aarch64", 183) if here == "x86_64" else ("x86_64", 62)
    fake = fleet_env.dir / "tools" / f"nats-server-{other}"
    fake.parent.mkdir(exist_ok=True)
    header = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00" + e_machine.to_bytes(2, "little")
    fake.write_bytes(header + bytes(64))  # an executable's header, for that CPU, and no code
    fake.chmod(0o755)
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()
    broker = fleet_env.net.hosts[BROKER]
    installed = broker.file("/usr/local/bin/nats-server").read_bytes()
    pid = fleet_env.main_pid(BROKER, "nats-server.service")
    staged = fleet_env.sh(BROKER, f"ls -l --full-time {STAGED_NATS} 2>&1")
    chosen = {"path": f"tools/{fake.name}", "sha256": digest}
    fleet_env.extra["nats"] = {"ack_wait": "30s", "server_binary": chosen}
    fleet_env.write()
    why = (
        f"the nats-server binary to deploy, {fake}, cannot run on {BROKER}: it is built for "
        f"{other}, and the host is {here}; point nats.server_binary in fleet.yaml at a "
        f"nats-server built for {here} (with its sha256)"
    )
    code, text = plan_lines(fleet_env, "--detailed-exitcode")
    shown = " ".join(text.split())
    assert code == 1, text
    assert f"! not planned: {why}" in shown, text
    assert shown.endswith(f"0 to destroy; 1 host(s) not planned: {BROKER}."), text
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"! not planned: {why}" in said, said  # nothing else to do: no host applied
    assert broker.file("/usr/local/bin/nats-server").read_bytes() == installed
    assert fleet_env.main_pid(BROKER, "nats-server.service") == pid  # never stopped
    assert fleet_env.sh(BROKER, f"ls -l --full-time {STAGED_NATS} 2>&1") == staged  # nor sent

    del fleet_env.extra["nats"]
    fleet_env.write()
    assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0


MONITOR_PROBE = (
    "python3 -c 'import sys, urllib.request as u\n"
    'try: print(u.urlopen("http://127.0.0.1:8222/varz", timeout=2).status)\n'
    'except OSError as e: print("closed", type(e).__name__)\''
)


def test_monitoring_is_off_and_setting_monitor_port_restarts_the_broker(
    fleet_env: FleetEnv,
) -> None:
    """The broker has no HTTP monitor; `nats.monitor_port` opens one on its loopback, and
    taking it out closes it again: both by a restart, which the plan says (a reload cannot
    change it)."""
    assert fleet_env.sh(BROKER, MONITOR_PROBE).startswith("closed")
    for opened in (True, False):
        if opened:
            fleet_env.extra["nats"] = {"ack_wait": "30s", "monitor_port": 8222}
        else:
            del fleet_env.extra["nats"]
        fleet_env.write()
        pid = fleet_env.main_pid(BROKER, "nats-server.service")
        code, text = plan_lines(fleet_env, "--detailed-exitcode")
        assert code == 2, text
        assert "~ file /etc/nats/nats-server.conf" in text
        assert "restart: nats-server startup settings changed" in text, text
        done = fleet_env.fleetctl("apply", "--all", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert fleet_env.main_pid(BROKER, "nats-server.service") != pid
        probe = fleet_env.sh(BROKER, MONITOR_PROBE)
        assert probe.strip() == "200" if opened else probe.startswith("closed"), probe
        assert plan_lines(fleet_env, "--detailed-exitcode")[0] == 0
    assert fleet_env.tasks_round_trip(["cmd-c"])["cmd-c"]["status"] == "completed"
