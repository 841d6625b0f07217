"""The local fleet's broker: the fleet with its creds and bus moved under the state dir, a
real nats-server (the pinned binary, or fleet.yaml's once its sha256 matches: `up` runs what
fleet.yaml names, as apply does on the hosts) in operator mode, and the bus's streams and
consumers made by the same plan and JetStream code as `apply`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from fleetctl.artifacts import brokerbinary
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.bus import client as bus_client
from fleetctl.bus.names import NatsNames
from fleetctl.config.errors import Mark
from fleetctl.config.model import BROKER_ROLE, CredsConfig, Fleet, Host
from fleetctl.config.routes import queues_of
from fleetctl.identity import credentials, fleetusers, natsaccess, routetls
from fleetctl.local.children import spawn_logged
from fleetctl.local.state import StateDir
from fleetctl.reconcile import jetstream
from fleetctl.reconcile.desired.broker import ClusterConf, broker_config
from fleetctl.reconcile.desired.bus import bus_state
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Change

LOCAL_SERVER_NAME = "fleetctl-local"
STOP_GRACE = 10.0
LOCAL_MARK = Mark("fleetctl up", 0, 0)


class LocalServerError(Exception):
    """The local broker could not be set up or started; the message says why and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> int:
    """A port `p` with p+1 .. p+count free too: a local cluster's brokers listen where a
    worker host's tunnels would (fleetctl/config/tunnels.py), so the pollers' URLs are the
    ones a host's would be."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65535 and all(_free(base + i) for i in range(1, count + 1)):
            return base
    raise LocalServerError(f"no {count + 1} free ports in a row on 127.0.0.1")


def local_broker_names(brokers: int) -> list[str]:
    if brokers == 1:
        return [LOCAL_SERVER_NAME]
    return [f"{LOCAL_SERVER_NAME}-{i}" for i in range(1, brokers + 1)]


def local_fleet(fleet: Fleet, state: StateDir, port: int, brokers: int = 1) -> Fleet:
    """The same fleet, with its creds store under the state dir (never the user's production
    store) and its bus on loopback with its data under the state dir: one nats-server on
    `port`, or `brokers` of them in a cluster (on port+1 .. port+N), in place of
    servers.yaml's brokers. No HTTP monitoring, whatever fleet.yaml says: it has no
    authentication, and the local fleet reads everything it shows over the bus."""
    creds = CredsConfig(
        operator=fleet.creds.operator,
        stores_dir=state.nsc / "stores",
        keys_dir=state.nsc / "keys",
        ttl=None,
        expiry_warning=fleet.creds.expiry_warning,
    )
    replicas = fleet.nats.replicas
    nats = fleet.nats.model_copy(
        update={
            "listen": "127.0.0.1",
            "port": port,
            "monitor_port": None,
            "store_dir": str(state.jetstream),
            "replicas": replicas if replicas is not None and replicas <= brokers else None,
        }
    )
    # servers.yaml's hosts run workers only; the local brokers take their place.
    hosts = tuple(
        dataclasses.replace(h, roles=h.roles - {BROKER_ROLE}) for h in fleet.hosts
    ) + tuple(
        Host(name, "127.0.0.1", "", 22, frozenset({BROKER_ROLE}), None, {}, LOCAL_MARK)
        for name in local_broker_names(brokers)
    )
    return dataclasses.replace(fleet, creds=creds, nats=nats, hosts=hosts)


@dataclasses.dataclass(frozen=True)
class LocalBroker:
    """One local nats-server: its name, client port, config, data and log."""

    name: str
    port: int
    conf: Path
    store_dir: Path
    log: Path
    cluster: ClusterConf | None = None


def local_brokers(
    local: Fleet, state: StateDir, cluster_ports: Sequence[int] = ()
) -> list[LocalBroker]:
    """One broker on the fleet's port (its data where it always was), or a cluster's, each
    on port+i with a directory of its own under the state dir and a route port from
    `cluster_ports`."""
    names = [h.name for h in local.brokers]
    if len(names) == 1:
        return [
            LocalBroker(
                names[0],
                local.nats.port,
                state.nats_conf,
                state.jetstream,
                state.log("nats-server"),
            )
        ]
    if len(cluster_ports) != len(names):
        raise LocalServerError(f"a local cluster of {len(names)} needs as many route ports")
    tls = state.nats / "tls"
    routes = tuple(f"nats-route://127.0.0.1:{p}" for p in cluster_ports)
    out = []
    for i, (name, cport) in enumerate(zip(names, cluster_ports, strict=True), 1):
        own = state.nats / name
        cluster = ClusterConf(
            f"127.0.0.1:{cport}",
            routes,
            str(tls / "ca.pem"),
            str(tls / f"{name}.pem"),
            str(tls / f"{name}.key"),
        )
        out.append(
            LocalBroker(
                name,
                local.nats.port + i,
                own / "nats-server.conf",
                own / "jetstream",
                state.log(name),
                cluster,
            )
        )
    return out


def bus_url(local: Fleet) -> str:
    """Where the local bus answers: one URL, or a cluster's, comma-separated."""
    if not local.is_cluster:
        return f"nats://127.0.0.1:{local.nats.port}"
    return ",".join(
        f"nats://127.0.0.1:{local.nats.port + i}" for i in range(1, len(local.brokers) + 1)
    )


@dataclasses.dataclass(frozen=True)
class LocalCreds:
    """The creds files of the local store: fleetctl's own users and each worker's."""

    admin: Path
    publisher: Path
    workers: dict[str, Path]
    auth_config: str
    system: Path | None = None  # fleet-sys: a local cluster's brokers for `status`
    dashboard: Path | None = None


def issue_creds(fleet: Fleet, worker_ids: list[str]) -> LocalCreds:
    """Create the local operator once, and creds for these workers (kept across runs).

    Users whose permissions this version (or fleet.yaml's routes) no longer grants are
    re-issued, as `creds init` does for the publisher and admin: on a host that waits for
    `creds rotate`, but these creds never leave this machine, and a poller with yesterday's
    permissions would fail its first task. The re-issued worker's old key is not revoked
    (its creds file is replaced; the local broker is this user's)."""
    authority, _ = credentials.init(fleet)
    credentials.issue(fleet, authority, worker_ids)
    names = NatsNames(fleet.nats.subject_prefix)
    queues = queues_of(fleet)
    outdated = set(natsaccess.outdated_users(authority, names, worker_ids, queues))
    for wid in worker_ids:
        if natsaccess.worker_user(wid) in outdated:
            natsaccess.issue_worker(authority, names, wid, routes=queues.get(wid, ()))
    workers = {w: authority.creds_path(natsaccess.worker_user(w)) for w in worker_ids}
    return LocalCreds(
        authority.creds_path(natsaccess.ADMIN_USER),
        authority.creds_path(natsaccess.PUBLISHER_USER),
        workers,
        authority.server_config(),
        authority.creds_path(natsaccess.SYSTEM_USER, authority.system_account),
        authority.creds_path(natsaccess.DASHBOARD_USER),
    )


def server_config(fleet: Fleet, broker: LocalBroker, auth_config: str) -> str:
    """nats-server.conf from the broker's own template, with the local paths and ports."""
    nats = fleet.nats.model_copy(update={"port": broker.port, "store_dir": str(broker.store_dir)})
    return broker_config(nats, broker.name, auth_config, broker.cluster)


def server_argv(fleet: Fleet, conf: Path) -> list[str]:
    """The pinned nats-server (or fleet.yaml's checked binary) with the local config."""
    try:
        binary = brokerbinary.resolve(fleet.nats.server_binary).checked()
    except ArtifactError as e:
        raise LocalServerError(str(e)) from None
    return [str(binary), "-c", str(conf)]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


def _write_tls(fleet: Fleet, brokers: Sequence[LocalBroker]) -> None:
    """A local cluster's route TLS, issued by the local store's CA (fleetctl/identity/routetls)."""
    if not any(b.cluster for b in brokers):
        return
    tls = routetls.ensure(fleet)
    if tls is None:
        raise LocalServerError("no route certificates for the local cluster")
    for b in brokers:
        assert b.cluster is not None
        _write_private(Path(b.cluster.ca_file), tls.ca_bundle)
        _write_private(Path(b.cluster.cert_file), tls.certs[b.name].cert)
        _write_private(Path(b.cluster.key_file), tls.certs[b.name].key)


def start(
    fleet: Fleet, brokers: Sequence[LocalBroker], auth_config: str
) -> dict[str, subprocess.Popen[bytes]]:
    """Write each broker's config and start them all; returns once each listens."""
    _write_tls(fleet, brokers)
    procs = {b.name: _spawn(fleet, b, auth_config) for b in brokers}
    for b in brokers:
        try:
            _wait_listening(b, procs[b.name])
        except LocalServerError:
            stop(procs)
            raise
    return procs


def _spawn(fleet: Fleet, broker: LocalBroker, auth_config: str) -> subprocess.Popen[bytes]:
    broker.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(broker.conf, server_config(fleet, broker, auth_config).encode())
    return spawn_logged(server_argv(fleet, broker.conf), broker.log, tied=True)


def _wait_listening(broker: LocalBroker, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalServerError(f"nats-server exited with {proc.returncode}: see {broker.log}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", broker.port), timeout=0.2),
        ):
            return
        time.sleep(0.02)
    raise LocalServerError(f"nats-server did not listen within 15 s: see {broker.log}")


def restart_dead(
    fleet: Fleet,
    brokers: Sequence[LocalBroker],
    procs: dict[str, subprocess.Popen[bytes]],
    auth_config: str,
) -> list[str]:
    """Start again each broker that exited (as systemd's Restart=always would): the names."""
    again = []
    for b in brokers:
        proc = procs.get(b.name)
        if proc is not None and proc.poll() is not None:
            procs[b.name] = _spawn(fleet, b, auth_config)
            again.append(b.name)
    return again


def reload(
    fleet: Fleet,
    brokers: Sequence[LocalBroker],
    procs: dict[str, subprocess.Popen[bytes]],
    auth_config: str,
) -> bool:
    """Write each config again and SIGHUP the servers whose config changed (as apply reloads
    the brokers); whether any did."""
    changed = False
    for b in brokers:
        conf = server_config(fleet, b, auth_config)
        if b.conf.read_text() == conf:
            continue
        _write_private(b.conf, conf.encode())
        procs[b.name].send_signal(signal.SIGHUP)
        changed = True
    return changed


def stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Each server, at once (SIGTERM: no lame duck, the whole bus is going)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def admin_endpoint(fleet: Fleet, creds: LocalCreds) -> bus_client.Endpoint:
    who = bus_client.Identity(
        natsaccess.ADMIN_USER, creds.admin, fleetusers.INBOX_PREFIXES[natsaccess.ADMIN_USER]
    )
    return bus_client.at(bus_url(fleet), who)


def bus_changes(fleet: Fleet, endpoint: bus_client.Endpoint) -> list[Change]:
    """What `apply` would change on this bus: the plan's diff against what it holds."""
    bus = bus_state(fleet)
    observed = jetstream.observe(endpoint, bus)
    plan = diff_bus(bus, observed, Selection(), fleet.broker)
    return jetstream.ordered(plan.changes) if plan is not None else []


def apply_bus(fleet: Fleet, endpoint: bus_client.Endpoint) -> list[Change]:
    """Make the streams and consumers the fleet wants, with apply's own code."""
    if not jetstream.wait_ready(endpoint, 30.0 if fleet.is_cluster else 15.0):
        raise LocalServerError("JetStream on the local nats-server did not answer in time")
    changes = bus_changes(fleet, endpoint)
    if changes:
        jetstream.apply(endpoint, changes)
    return changes
