"""A three-broker NATS cluster on simulated hosts, attacked under load: real sshd, three real
nats-servers with routes over mutual TLS, real autossh tunnels from two worker hosts (one
per broker), pollers connected to all three, stand-in CLIs that log when each run starts
and ends.

The fleet starts on one broker and becomes a cluster by adding two (the planned migration:
`~ stream AF_TASKS replicas 1 -> 3`). Then each test sends a stream of 200 tasks
(tests/support/cluster_load.py) and meanwhile: kills
one broker with SIGKILL and brings it back; cuts one broker's link for 20 s; applies a
change that restarts all three brokers (a rolling apply). Each time: every task has its
result stored (none lost), no task ran twice at the same time, `status --check` says the
cluster is degraded while it is and healthy once it is back. At the end, a dead broker is
replaced, and the cluster goes back to one broker (`replicas 3 -> 1`). The tests share one
cluster and run in order; the module takes about five minutes (the cut alone lasts 20 s,
and its slowest task waits for ack_wait)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetctl import layout
from tests.e2e.fleet_env import FleetEnv, install_standins, prepare_wheelhouse, worker
from tests.support.simhosts import SimNet, skip_reason

pytestmark = pytest.mark.e2e

BROKERS = ("broker-1", "broker-2", "broker-3")
SPARE = "broker-4"  # the host that replaces a dead broker
NODES = ("worker-node-1", "worker-node-2")
WORKERS = ("w1", "w2", "w3", "w4")
TASKS = 200
RATE = 8.0  # tasks per second: the stream lasts 25 s
REPO = Path(__file__).resolve().parents[2]


class ClusterEnv(FleetEnv):
    """The example's shape on three brokers (or the first alone), workers logging their
    stand-in runs."""

    brokers: tuple[str, ...] = BROKERS

    def write(self) -> None:
        hosts = [
            {"name": b, "address": self.net.hosts[b].address, "roles": ["broker-host"]}
            for b in self.brokers
        ] + [
            {"name": n, "address": self.net.hosts[n].address, "roles": ["worker-host"]}
            for n in self.nodes
        ]
        self.servers_path.write_text(yaml.safe_dump({"version": 1, "servers": hosts}))
        fleet = {
            "version": 1,
            "nats": {"ack_wait": "30s", **self.extra.get("nats", {})},
            "creds": {"stores_dir": "nsc/stores", "keys_dir": "nsc/keys"},
            "defaults": {"task_timeout": "2m"},
            "workers": self.workers,
        }
        self.fleet_path.write_text(yaml.safe_dump(fleet, sort_keys=False))

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.fleetctl("status", "--check", "--no-hosts", "--json", timeout=60)
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}

    def load(self, prefix: str, count: int = TASKS) -> subprocess.Popen[str]:
        """The stream of tasks, started now; its JSON once it is done."""
        script = REPO / "tests" / "support" / "cluster_load.py"
        argv = [
            sys.executable,
            str(script),
            str(self.net.ssh_config),
            str(self.publisher_creds()),
            str(count),
            str(RATE),
            "240",
            prefix,
            *WORKERS,
            "--",
            *(self.net.hosts[b].address for b in self.brokers),
        ]
        env = self.env()
        env["PYTHONPATH"] = str(REPO)
        return subprocess.Popen(
            self.net.lan_argv(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def runs(self) -> list[dict[str, Any]]:
        """Every stand-in run on every worker host (its start and end lines)."""
        found = []
        for node in self.nodes:
            for wid in WORKERS:
                text = self.sh(node, f"cat /var/lib/fleet/{wid}/standin.log 2>/dev/null")
                found += [json.loads(line) for line in text.splitlines() if line.strip()]
        return found


def _workers() -> list[dict[str, Any]]:
    return [
        worker(wid, NODES[i % 2], concurrency=2, env_file=f"/etc/fleet/env/{wid}.env")
        for i, wid in enumerate(WORKERS)
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterEnv]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    prepare_wheelhouse()
    base = tmp_path_factory.mktemp("cluster")
    with SimNet(base / "net", [*BROKERS, SPARE, *NODES]) as net:
        install_standins(net, NODES)
        for i, wid in enumerate(WORKERS):
            log = f"STANDIN_LOG=/var/lib/fleet/{wid}/standin.log\n"
            net.hosts[NODES[i % 2]].write_file(f"/etc/fleet/env/{wid}.env", log)
        env = ClusterEnv(net, base, workers=_workers(), nodes=NODES)
        env.write()
        yield env


def _finish(load: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = load.communicate(timeout=300)
    assert load.returncode == 0, err[-3000:]
    answer: dict[str, Any] = json.loads(out)
    print(f"published in {answer['published_in_s']} s, all results in {answer['done_in_s']} s")
    late = sorted(
        ((e.get("stored_s", 0) - e["sent_s"], t, e["worker"]) for t, e in answer["tasks"].items()),
        reverse=True,
    )[:8]
    print("slowest:", late)
    return answer


def _overlaps(runs: list[dict[str, Any]], prefix: str) -> list[str]:
    """Task ids with two runs at the same time (a run without an end runs until now)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    starts: dict[tuple[str, int], float] = {}
    for r in runs:
        task = r.get("task_id") or ""
        if not task.startswith(prefix):
            continue
        key = (task, r["pid"])
        if r["phase"] == "start":
            starts[key] = r["at"]
        elif key in starts:
            spans.setdefault(task, []).append((starts.pop(key), r["at"]))
    for (task, _), began in starts.items():
        spans.setdefault(task, []).append((began, float("inf")))
    found = []
    for task, intervals in spans.items():
        ordered = sorted(intervals)
        if any(b[0] < a[1] for a, b in itertools.pairwise(ordered)):
            found.append(task)
    return found


def _planned_bus(env: ClusterEnv) -> dict[str, Any]:
    """What `plan --json` says it would change on the bus (the plan itself must succeed)."""
    plan = env.fleetctl("plan", "--json", timeout=300)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    return dict(json.loads(plan.stdout)["bus"])


def _check_load(env: ClusterEnv, answer: dict[str, Any], prefix: str, count: int = TASKS) -> None:
    tasks = answer["tasks"]
    assert len(tasks) == count
    unpublished = [t for t, e in tasks.items() if e["attempts"] < 0]
    assert unpublished == [], unpublished
    lost = [t for t, e in tasks.items() if e["result"] is None]
    if lost:  # what the pollers said of the first one, to find out why
        for node in env.nodes:
            for wid in WORKERS:
                log = env.sh(node, f"cat /var/log/journal/{wid}-poller.service.log")
                said = [line[:400] for line in log.splitlines() if lost[0] in line]
                if said:
                    print(f"{node} {wid}:", *said, sep="\n  ")
    assert lost == [], f"{len(lost)} tasks without a stored result: {lost[:10]}"
    assert {e["result"]["status"] for e in tasks.values()} == {"completed"}
    assert _overlaps(env.runs(), prefix) == []


def _wait_healthy(env: ClusterEnv, seconds: float = 120) -> dict[str, Any]:
    began = time.monotonic()
    deadline = began + seconds
    while True:
        code, body = env.status()
        if code == 0 or time.monotonic() > deadline:
            assert code == 0, body.get("problems")
            print(f"healthy after {time.monotonic() - began:.1f} s")
            return body
        print("degraded:", body.get("problems"))
        time.sleep(2)


def test_one_broker_becomes_three_by_a_planned_migration(cluster: ClusterEnv) -> None:
    """The fleet runs on broker-1 alone; adding two brokers plans each stream's copies
    (`replicas 1 -> 3`) and the members, and apply makes the cluster. The streams are made
    again on the cluster, in a store of its own (nats-server does not carry a standalone
    server's streams into a cluster, and its old consumers' state would skip the first
    tasks of the new streams: docs/operations.md), so apply refuses while tasks are queued
    (unit-tested in tests/unit/reconcile/test_cluster_migration.py) and the fleet is drained
    first: here, every task of a first stream has its result before the brokers are added.
    The next tests' first tasks are the ones a shared store would skip."""
    cluster.brokers = BROKERS[:1]
    cluster.write()
    done = cluster.fleetctl("apply", "--all", "--issue-creds", "--yes", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    before = _finish(cluster.load("one", 40))
    _check_load(cluster, before, "one", 40)

    cluster.brokers = BROKERS
    cluster.write()
    bus = _planned_bus(cluster)
    changes = {(c["action"], c["type"], c["name"]): c["attributes"] for c in bus["changes"]}
    assert changes[("update", "stream", "AF_TASKS")]["replicas"] == "replicas 1 -> 3"
    assert ("create", "member", "broker-2") in changes
    assert ("create", "member", "broker-3") in changes
    done = cluster.fleetctl("apply", "--all", "--yes", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_migration_made_a_cluster_with_every_stream_on_three_brokers(
    cluster: ClusterEnv,
) -> None:
    for node in NODES:
        for b in BROKERS:
            assert cluster.active(node, f"fleet-tunnel-{b}.service")
    body = _wait_healthy(cluster)
    broker = body["broker"]
    assert [(s["name"], s["up"], s["healthy"]) for s in broker["servers"]] == [
        (b, True, True) for b in BROKERS
    ]
    for s in broker["servers"]:
        assert sorted(s["routes"]) == sorted(b for b in BROKERS if b != s["name"])
    assert broker["meta_leader"] in BROKERS
    for stream in broker["streams"]:
        assert stream["leader"] in BROKERS
        assert sorted([stream["leader"], *(r["name"] for r in stream["replicas"])]) == list(BROKERS)
    plan = cluster.fleetctl("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr


def _forward_reads(env: ClusterEnv, broker: str, target: str, local_port: int) -> bytes:
    """What comes back through `ssh -L local_port:target` to `broker` as the tunnel user,
    with worker-node-1's tunnel key (the local copy fleetctl generated)."""
    key = env.dir / "nsc" / "keys" / "fleetctl-tunnel" / NODES[0]
    address = env.net.hosts[broker].address
    argv = env.net.lan_argv(
        ["timeout", "8", "ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", "-N",
         "-L", f"127.0.0.1:{local_port}:{target}", f"{layout.TUNNEL_USER}@{address}"]
    )  # fmt: skip
    ssh = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 8
        while True:
            with env.net.in_lan():
                try:
                    conn = socket.create_connection(("127.0.0.1", local_port), timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline or ssh.poll() is not None:
                        return b""
            time.sleep(0.1)
        with conn:
            conn.settimeout(3)
            try:
                return conn.recv(4096)
            except TimeoutError:
                return b""
    finally:
        ssh.terminate()
        ssh.wait(10)


def test_a_tunnel_key_opens_each_brokers_nats_port_and_not_its_route_port(
    cluster: ClusterEnv,
) -> None:
    """The key every broker lets in may forward to that broker's NATS port only: not to the
    route port the brokers speak to each other on, on loopback or on its address."""
    for i, broker in enumerate(BROKERS):
        address = cluster.net.hosts[broker].address
        port = 14500 + 10 * i
        assert _forward_reads(cluster, broker, "127.0.0.1:4222", port).startswith(b"INFO ")
        assert _forward_reads(cluster, broker, "127.0.0.1:6222", port + 1) == b""
        assert _forward_reads(cluster, broker, f"{address}:6222", port + 2) == b""


def test_a_route_without_a_certificate_of_the_fleets_ca_is_refused(
    cluster: ClusterEnv, tmp_path: Path
) -> None:
    """Anyone on the network reaches the route port; only the brokers' certificates get in."""
    from fleetctl.config.model import CredsConfig
    from fleetctl.identity import routetls
    from tests.support.example import cluster_fleet

    stranger = dataclasses.replace(
        cluster_fleet(), creds=CredsConfig(stores_dir=tmp_path / "s", keys_dir=tmp_path / "k")
    )
    tls = routetls.ensure(stranger)  # a CA of its own, and a certificate from it
    assert tls is not None
    mine = tls.certs["broker-1"]
    (tmp_path / "c.pem").write_bytes(mine.cert)
    (tmp_path / "c.key").write_bytes(mine.key)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
    address = cluster.net.hosts["broker-2"].address
    with cluster.net.in_lan():
        raw = socket.create_connection((address, 6222), timeout=5)
    with raw:  # the route port speaks TLS first
        try:
            with context.wrap_socket(raw) as tls_socket:  # TLS 1.3: refused at the next read
                tls_socket.sendall(b"CONNECT {}\r\nPING\r\n")
                refused = tls_socket.recv(4096) == b""
        except (ssl.SSLError, OSError):
            refused = True
    assert refused
    log = cluster.sh("broker-2", "cat /var/log/journal/nats-server.service.log")
    assert "TLS route handshake error" in log, log[-2000:]


def test_a_broker_killed_mid_stream_loses_no_task(cluster: ClusterEnv) -> None:
    _, body = cluster.status()
    leader = next(s["leader"] for s in body["broker"]["streams"] if s["name"] == "AF_TASKS")
    load = cluster.load("kill")
    time.sleep(6)
    host = cluster.net.hosts[leader]
    assert host.run(["pkill", "-KILL", "-x", "nats-server"]).returncode == 0
    time.sleep(2)
    code, body = cluster.status()
    assert code == 1
    assert f"broker {leader}: down (it does not answer)" in body["problems"]
    time.sleep(8)
    started = host.run(["systemctl", "start", "nats-server.service"])
    assert started.returncode == 0, started.stderr
    answer = _finish(load)
    _check_load(cluster, answer, "kill")
    _wait_healthy(cluster)


def test_a_broker_cut_off_for_20_seconds_loses_no_task(cluster: ClusterEnv) -> None:
    victim = cluster.net.hosts["broker-3"]
    load = cluster.load("cut")
    time.sleep(5)
    victim.set_reachable(False)
    try:
        time.sleep(5)
        code, body = cluster.status()
        assert code == 1
        assert "broker broker-3: down (it does not answer)" in body["problems"]
        time.sleep(15)
    finally:
        victim.set_reachable(True)
    answer = _finish(load)
    _check_load(cluster, answer, "cut")
    _wait_healthy(cluster, 180)


def test_a_rolling_apply_restarts_each_broker_in_turn_under_load(cluster: ClusterEnv) -> None:
    """A startup setting changed: every broker restarts, one at a time, the meta leader last."""
    _, body = cluster.status()
    leader = body["broker"]["meta_leader"]
    cluster.extra = {"nats": {"max_memory_store": "300MiB"}}
    cluster.write()
    plan = cluster.fleetctl("plan")
    assert plan.stdout.count("restart: nats-server startup settings changed") == 3, plan.stdout
    pids = {b: cluster.main_pid(b, "nats-server.service") for b in BROKERS}
    load = cluster.load("roll")
    time.sleep(4)
    done = cluster.fleetctl("apply", "--all", "--yes", timeout=900)
    answer = _finish(load)
    assert done.returncode == 0, done.stdout + done.stderr
    after = {b: cluster.main_pid(b, "nats-server.service") for b in BROKERS}
    assert all(after[b] != pids[b] for b in BROKERS), (pids, after)
    started = {b: _started_at(cluster, b, after[b]) for b in BROKERS}
    assert max(started, key=lambda b: started[b]) == leader, (started, leader)
    _check_load(cluster, answer, "roll")
    _wait_healthy(cluster)


def _started_at(env: ClusterEnv, host: str, main_pid: str) -> float:
    pid = main_pid.split("=")[-1]
    ticks = env.sh(host, f"cut -d' ' -f22 /proc/{pid}/stat").strip()
    return float(ticks)


def test_a_dead_broker_host_is_replaced_by_a_new_one(cluster: ClusterEnv) -> None:
    """broker-3's host is gone for good (cut off, never back); servers.yaml names broker-4
    in its place. Apply starts broker-4, removes broker-3 from the JetStream meta group, and
    JetStream places broker-3's copies on broker-4: the cluster is healthy again on
    broker-1, broker-2 and broker-4, and tasks flow (docs/operations.md)."""
    cluster.net.hosts["broker-3"].set_reachable(False)
    began, problems = time.monotonic(), None

    def only_broker_3_down(problems: list[str] | None) -> bool:
        """broker-3 down, and at most its own copies lagging behind (as they do once more
        than `status.max_replica_lag` operations pass without it): the rest serves."""
        down, *rest = problems or [""]
        return down == "broker broker-3: down (it does not answer)" and all(
            " on broker-3 (down) is " in p for p in rest
        )

    while not only_broker_3_down(problems):
        assert time.monotonic() - began < 90, problems
        problems = cluster.status()[1].get("problems")
    replaced = (*BROKERS[:2], SPARE)
    cluster.brokers = replaced
    cluster.write()
    plan = cluster.fleetctl("plan", "--json", timeout=300)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    bus = json.loads(plan.stdout)["bus"]
    members = {(c["action"], c["name"]) for c in bus["changes"] if c["type"] == "member"}
    assert members == {("create", SPARE), ("delete", "broker-3")}
    done = cluster.fleetctl("apply", "--all", "--yes", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    body = _wait_healthy(cluster, 180)
    assert sorted(s["name"] for s in body["broker"]["servers"] if s["up"]) == sorted(replaced)
    for stream in body["broker"]["streams"]:
        copies = [stream["leader"], *(r["name"] for r in stream["replicas"])]
        assert sorted(copies) == sorted(replaced), stream
    after = _finish(cluster.load("new", 40))
    _check_load(cluster, after, "new", 40)


def test_the_cluster_goes_back_to_one_broker_by_a_planned_migration(cluster: ClusterEnv) -> None:
    """The mirror of the first test: servers.yaml names broker-1 alone. The plan shows each
    stream's copies (`replicas 3 -> 1`) and the brokers that leave; apply restarts broker-1
    on a single-server store and makes the streams again there (with nothing queued or
    running: unit-tested refusal in tests/unit/reconcile/test_cluster_migration.py); the
    brokers that left are stopped and removed by `fleetctl decommission`; tasks flow."""
    cluster.brokers = BROKERS[:1]
    cluster.write()
    bus = _planned_bus(cluster)
    changes = {(c["action"], c["type"], c["name"]): c["attributes"] for c in bus["changes"]}
    assert changes[("update", "stream", "AF_TASKS")]["replicas"] == "replicas 3 -> 1"
    members = {(c["action"], c["name"]) for c in bus["changes"] if c["type"] == "member"}
    assert members == {("delete", "broker-2"), ("delete", SPARE)}
    done = cluster.fleetctl("apply", "--all", "--yes", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    conf = cluster.sh("broker-1", f"cat {layout.NATS_CONF}")
    assert "cluster" not in conf and "/cluster" not in conf, conf
    for broker in ("broker-2", SPARE):
        done = cluster.fleetctl("decommission", broker, "--yes", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert not cluster.active(broker, layout.NATS_UNIT)
        assert "nats-server" not in cluster.sh(broker, "ps -eo args")
    code, body = cluster.status()
    assert code == 0, body.get("problems")
    assert body["broker"]["servers"] == []
    after = _finish(cluster.load("alone", 16))
    _check_load(cluster, after, "alone", 16)
