"""Fleet -> what each host should have: users, directories, files, units, NATS resources.

A pure function of the validated fleet: no I/O beyond reading templates, so it is fast,
deterministic and tested byte for byte against golden files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleetctl import layout
from fleetctl.model import Fleet, Host, Worker
from fleetctl.natsnames import NatsNames
from fleetctl.natsresources import TASK_MAX_BYTES, ConsumerSpec, StreamSpec, fleet_resources
from fleetctl.render.engine import Raw, render_nats_conf, render_unit

# How long systemd waits after SIGTERM before killing a poller: its grace to finish tasks.
POLLER_STOP_TIMEOUT = 90


@dataclass(frozen=True)
class UserSpec:
    name: str
    home: str
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"user {self.name}"


@dataclass(frozen=True)
class DirSpec:
    path: str
    owner: str
    group: str
    mode: int = 0o750
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"dir {self.path}"


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: bytes = field(repr=False)
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    sensitive: bool = False
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"file {self.path}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class UnitSpec:
    name: str
    file: str
    enabled: bool = True
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"unit {self.name}"


NatsResource = StreamSpec | ConsumerSpec
Resource = UserSpec | DirSpec | FileSpec | UnitSpec | NatsResource


@dataclass(frozen=True)
class HostState:
    """Everything fleetctl wants on one host, in apply order."""

    host: Host
    users: tuple[UserSpec, ...] = ()
    dirs: tuple[DirSpec, ...] = ()
    files: tuple[FileSpec, ...] = ()
    units: tuple[UnitSpec, ...] = ()
    nats: tuple[NatsResource, ...] = ()
    disabled_workers: tuple[str, ...] = ()

    def resources(self) -> Iterable[tuple[Resource, str | None]]:
        """Every resource with the worker it belongs to (None: shared by the host)."""
        host_resources: tuple[UserSpec | DirSpec | FileSpec | UnitSpec, ...] = (
            *self.users,
            *self.dirs,
            *self.files,
            *self.units,
        )
        for r in host_resources:
            yield r, r.worker
        for n in self.nats:
            yield n, n.durable.removeprefix("worker-") if isinstance(n, ConsumerSpec) else None


def desired_state(
    fleet: Fleet,
    *,
    auth_config: str | None = None,
    creds: Mapping[str, bytes] | None = None,
) -> dict[str, HostState]:
    """Per host name, in servers.yaml order. `auth_config` is the broker's operator/resolver
    block and `creds` each worker's .creds content, both from the nsc store when it exists."""
    broker = fleet.broker
    return {
        host.name: _host_state(fleet, host, broker, auth_config, creds or {})
        for host in fleet.hosts
    }


def _host_state(
    fleet: Fleet,
    host: Host,
    broker: Host,
    auth_config: str | None,
    creds: Mapping[str, bytes],
) -> HostState:
    users: list[UserSpec] = []
    dirs: list[DirSpec] = []
    files: list[FileSpec] = []
    units: list[UnitSpec] = []
    nats: list[NatsResource] = []
    if host.is_broker:
        _add_broker(fleet, host, auth_config, users, dirs, files, units)
        enabled = [(w.id, w.concurrency) for w in fleet.workers if w.enabled]
        nats += fleet_resources(fleet.nats, enabled)
    workers = fleet.workers_on(host.name) if host.is_worker_host else []
    tunnel = None
    if workers and not host.is_broker:
        tunnel = layout.TUNNEL_UNIT
        _add_tunnel(fleet, host, broker, users, files, units)
    for worker in workers:
        _add_worker(fleet, worker, tunnel, users, dirs, files, units)
        if worker.id in creds:
            user = worker.service_user
            path = layout.creds_path(worker.id)
            files.append(FileSpec(path, creds[worker.id], user, user, 0o600, True, worker.id))
    disabled = tuple(w.id for w in fleet.workers if w.host == host.name and not w.enabled)
    return HostState(
        host, tuple(users), tuple(dirs), tuple(files), tuple(units), tuple(nats), disabled
    )


def _add_broker(
    fleet: Fleet,
    host: Host,
    auth_config: str | None,
    users: list[UserSpec],
    dirs: list[DirSpec],
    files: list[FileSpec],
    units: list[UnitSpec],
) -> None:
    s = fleet.nats
    users.append(UserSpec(layout.NATS_USER, "/var/lib/nats"))
    dirs.append(DirSpec(s.store_dir, layout.NATS_USER, layout.NATS_USER, 0o700))
    conf = render_nats_conf(
        "nats/nats-server.conf.j2",
        host_name=host.name,
        listen=f"{s.listen}:{s.port}",
        monitor=f"127.0.0.1:{s.monitor_port}",
        max_payload=TASK_MAX_BYTES,
        store_dir=s.store_dir,
        max_memory_store=s.max_memory_store,
        max_file_store=s.max_file_store,
        auth=Raw(auth_config) if auth_config else None,
    )
    files.append(FileSpec(layout.NATS_CONF, conf.encode(), "root", layout.NATS_USER, 0o640))
    unit = render_unit(
        "systemd/nats-server.service.j2",
        host=host,
        nats_user=layout.NATS_USER,
        nats_bin=layout.NATS_BIN,
        conf=layout.NATS_CONF,
        store_dir=s.store_dir,
    )
    path = layout.unit_path(layout.NATS_UNIT)
    files.append(FileSpec(path, unit.encode()))
    units.append(UnitSpec(layout.NATS_UNIT, path))


def _add_tunnel(
    fleet: Fleet,
    host: Host,
    broker: Host,
    users: list[UserSpec],
    files: list[FileSpec],
    units: list[UnitSpec],
) -> None:
    users.append(UserSpec(layout.TUNNEL_USER, "/nonexistent"))
    known_hosts = f"{layout.FLEET_ETC}/tunnel/known_hosts"
    if broker.host_key:
        line = f"{_known_hosts_name(broker)} {broker.host_key}\n"
        files.append(FileSpec(known_hosts, line.encode(), "root", layout.TUNNEL_USER, 0o644))
    port = fleet.nats.port
    unit = render_unit(
        "systemd/tunnel.service.j2",
        host=host,
        broker=broker,
        port=port,
        tunnel_user=layout.TUNNEL_USER,
        known_hosts=known_hosts,
        key=layout.TUNNEL_KEY,
        forward=f"127.0.0.1:{port}:{fleet.nats.listen}:{port}",
        login=f"{layout.TUNNEL_USER}@{broker.address}",
    )
    path = layout.unit_path(layout.TUNNEL_UNIT)
    files.append(FileSpec(path, unit.encode()))
    units.append(UnitSpec(layout.TUNNEL_UNIT, path))


def _known_hosts_name(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def poller_environment(fleet: Fleet, worker: Worker) -> list[tuple[str, str]]:
    """What every poller reads, whatever its backend (docs/poller.md has the contract)."""
    names = NatsNames(fleet.nats.subject_prefix)
    port = fleet.nats.port
    host = fleet.host(worker.host)
    nats_host = fleet.nats.listen if host.is_broker else "127.0.0.1"
    return [
        ("WORKER_ID", worker.id),
        ("LLM", worker.llm),
        ("MODEL_BACKEND", worker.backend),
        ("NATS_URL", f"nats://{nats_host}:{port}"),
        ("NATS_CREDS", layout.creds_path(worker.id)),
        ("NATS_SUBJECT_PREFIX", fleet.nats.subject_prefix),
        ("NATS_TASK_STREAM", names.task_stream),
        ("NATS_CONSUMER", names.consumer(worker.id)),
        ("NATS_RESULTS_STREAM", names.results_stream),
        ("NATS_DEAD_STREAM", names.dead_stream),
        ("NATS_INBOX_PREFIX", names.inbox_prefix(worker.id)),
        ("CONCURRENCY", str(worker.concurrency)),
        ("TASK_TIMEOUT", str(worker.task_timeout)),
        ("HOME", worker.work_base),
        ("WORK_BASE", worker.work_base),
        ("WORK_DIR", f"{worker.work_base}/repo"),
        ("CREATE_PR", "true" if worker.create_pr else "false"),
        ("GITHUB_REMOTE", worker.github_remote),
    ]


def render_poller_unit(fleet: Fleet, worker: Worker, tunnel_unit: str | None) -> str:
    return render_unit(
        f"systemd/{worker.backend}.service.j2",
        worker=worker,
        common_env=poller_environment(fleet, worker),
        command_argv_json=json.dumps(list(worker.command or ())),
        tunnel_unit=tunnel_unit,
        poller_bin=layout.POLLER_BIN,
        stop_timeout=POLLER_STOP_TIMEOUT,
    )


def _add_worker(
    fleet: Fleet,
    worker: Worker,
    tunnel_unit: str | None,
    users: list[UserSpec],
    dirs: list[DirSpec],
    files: list[FileSpec],
    units: list[UnitSpec],
) -> None:
    user = worker.service_user
    users.append(UserSpec(user, worker.work_base, worker.id))
    dirs.append(DirSpec(worker.work_base, user, user, 0o750, worker.id))
    path = layout.unit_path(worker.unit)
    unit = render_poller_unit(fleet, worker, tunnel_unit)
    files.append(FileSpec(path, unit.encode(), worker=worker.id))
    units.append(UnitSpec(worker.unit, path, worker=worker.id))
