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
from pathlib import Path

from fleetctl.artifacts import brokerbinary
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.bus import client as bus_client
from fleetctl.bus.names import NatsNames
from fleetctl.config.model import CredsConfig, Fleet
from fleetctl.config.routes import queues_of
from fleetctl.identity import credentials, fleetusers, natsaccess
from fleetctl.local.children import spawn_logged
from fleetctl.local.state import StateDir
from fleetctl.reconcile import jetstream
from fleetctl.reconcile.desired.broker import broker_config
from fleetctl.reconcile.desired.bus import bus_state
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Change

LOCAL_SERVER_NAME = "fleetctl-local"
STOP_GRACE = 10.0


class LocalServerError(Exception):
    """The local broker could not be set up or started; the message says why and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def local_fleet(fleet: Fleet, state: StateDir, port: int) -> Fleet:
    """The same fleet, with its creds store under the state dir (never the user's production
    store) and its bus on a loopback port with its data under the state dir. No HTTP
    monitoring, whatever fleet.yaml says: it has no authentication, and the local fleet
    reads everything it shows over the bus."""
    creds = CredsConfig(
        operator=fleet.creds.operator,
        stores_dir=state.nsc / "stores",
        keys_dir=state.nsc / "keys",
        ttl=None,
        expiry_warning=fleet.creds.expiry_warning,
    )
    nats = fleet.nats.model_copy(
        update={
            "listen": "127.0.0.1",
            "port": port,
            "monitor_port": None,
            "store_dir": str(state.jetstream),
        }
    )
    return dataclasses.replace(fleet, creds=creds, nats=nats)


@dataclasses.dataclass(frozen=True)
class LocalCreds:
    """The creds files of the local store: fleetctl's two users and each worker's."""

    admin: Path
    publisher: Path
    workers: dict[str, Path]
    auth_config: str


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
    )


def server_config(fleet: Fleet, auth_config: str) -> str:
    """nats-server.conf from the broker's own template, with the local paths and ports."""
    return broker_config(fleet.nats, LOCAL_SERVER_NAME, auth_config)


def server_argv(fleet: Fleet, conf: Path) -> list[str]:
    """The pinned nats-server (or fleet.yaml's checked binary) with the local config."""
    try:
        binary = brokerbinary.resolve(fleet.nats.server_binary).checked()
    except ArtifactError as e:
        raise LocalServerError(str(e)) from None
    return [str(binary), "-c", str(conf)]


def start(fleet: Fleet, state: StateDir, auth_config: str) -> subprocess.Popen[bytes]:
    """Write the config and start nats-server; returns once it listens."""
    state.jetstream.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.nats_conf.write_text(server_config(fleet, auth_config))
    state.nats_conf.chmod(0o600)
    argv = server_argv(fleet, state.nats_conf)
    proc = spawn_logged(argv, state.log("nats-server"), tied=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalServerError(
                f"nats-server exited with {proc.returncode}: see {state.log('nats-server')}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", fleet.nats.port), timeout=0.2),
        ):
            return proc
        time.sleep(0.02)
    stop(proc)
    raise LocalServerError(
        f"nats-server did not listen within 15 s: see {state.log('nats-server')}"
    )


def reload(fleet: Fleet, state: StateDir, proc: subprocess.Popen[bytes], auth_config: str) -> bool:
    """Write the config again and SIGHUP the server when it changed (as apply reloads the
    broker); whether it did."""
    conf = server_config(fleet, auth_config)
    if state.nats_conf.read_text() == conf:
        return False
    state.nats_conf.write_text(conf)
    proc.send_signal(signal.SIGHUP)
    return True


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def admin_endpoint(fleet: Fleet, creds: LocalCreds) -> bus_client.Endpoint:
    who = bus_client.Identity(
        natsaccess.ADMIN_USER, creds.admin, fleetusers.INBOX_PREFIXES[natsaccess.ADMIN_USER]
    )
    return bus_client.at(f"nats://127.0.0.1:{fleet.nats.port}", who)


def bus_changes(fleet: Fleet, endpoint: bus_client.Endpoint) -> list[Change]:
    """What `apply` would change on this bus: the plan's diff against what it holds."""
    bus = bus_state(fleet)
    observed = jetstream.observe(endpoint, bus)
    plan = diff_bus(bus, observed, Selection(), fleet.broker)
    return jetstream.ordered(plan.changes) if plan is not None else []


def apply_bus(fleet: Fleet, endpoint: bus_client.Endpoint) -> list[Change]:
    """Make the streams and consumers the fleet wants, with apply's own code."""
    if not jetstream.wait_ready(endpoint):
        raise LocalServerError("JetStream on the local nats-server did not answer within 15 s")
    changes = bus_changes(fleet, endpoint)
    if changes:
        jetstream.apply(endpoint, changes)
    return changes
