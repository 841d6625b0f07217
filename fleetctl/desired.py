"""Fleet -> what each host should have: users, directories, files, units, NATS resources.

A pure function of the validated fleet: no I/O beyond reading templates, so it is fast,
deterministic and tested byte for byte against golden files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleetctl import backends, layout, tunnellogin
from fleetctl.model import Fleet, Host, Worker
from fleetctl.natsnames import NatsNames
from fleetctl.natsresources import TASK_MAX_BYTES, ConsumerSpec, StreamSpec, fleet_resources
from fleetctl.render.engine import Raw, render_nats_conf, render_unit
from fleetctl.tunnelkeys import TunnelKey

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
    """A unit to enable and run. A change in any `restart_on` input (a file path, an env file
    the operator manages, or `package NAME`) restarts it; a change in `reload_on` reloads it."""

    name: str
    file: str
    enabled: bool = True
    worker: str | None = None
    restart_on: tuple[str, ...] = ()
    reload_on: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"unit {self.name}"


@dataclass(frozen=True)
class PackageSpec:
    """Software fleetctl installs itself: the poller's virtual environment, nats-server."""

    name: str
    version: str
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"package {self.name}"


POLLER_PACKAGE = "fleet-poller"
NATS_PACKAGE = "nats-server"

NatsResource = StreamSpec | ConsumerSpec
HostResource = UserSpec | DirSpec | FileSpec | UnitSpec | PackageSpec
Resource = HostResource | NatsResource


@dataclass(frozen=True)
class Versions:
    """What fleetctl would install (None: unknown, so the package is not planned)."""

    poller: str | None = None
    nats_server: str | None = None


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
    packages: tuple[PackageSpec, ...] = ()

    def resources(self) -> Iterable[tuple[Resource, str | None]]:
        """Every resource with the worker it belongs to (None: shared by the host)."""
        host_resources: tuple[HostResource, ...] = (
            *self.users,
            *self.dirs,
            *self.packages,
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
    versions: Versions = Versions(),
    tunnel_keys: Mapping[str, TunnelKey] | None = None,
    broker_key: str | None = None,
) -> dict[str, HostState]:
    """Per host name, in servers.yaml order. `auth_config` is the broker's operator/resolver
    block and `creds` each worker's .creds content, both from the nsc store when it exists;
    `tunnel_keys` the worker hosts' tunnel keys and `broker_key` the broker's SSH host key
    (pinned in servers.yaml, or as verified when fleetctl connected)."""
    context = _Context(
        fleet,
        fleet.broker,
        auth_config,
        creds or {},
        versions,
        tunnel_keys or {},
        broker_key or fleet.broker.host_key,
    )
    return {host.name: _host_state(context, host) for host in fleet.hosts}


@dataclass(frozen=True)
class _Context:
    fleet: Fleet
    broker: Host
    auth_config: str | None
    creds: Mapping[str, bytes] = field(repr=False)
    versions: Versions
    tunnel_keys: Mapping[str, TunnelKey] = field(repr=False)
    broker_key: str | None


def _host_state(ctx: _Context, host: Host) -> HostState:
    fleet = ctx.fleet
    users: list[UserSpec] = []
    dirs: list[DirSpec] = []
    files: list[FileSpec] = []
    units: list[UnitSpec] = []
    nats: list[NatsResource] = []
    packages: list[PackageSpec] = []
    if host.is_broker:
        _add_broker(ctx, host, users, dirs, files, units, packages)
        enabled = [(w.id, w.concurrency) for w in fleet.workers if w.enabled]
        nats += fleet_resources(fleet.nats, enabled)
    workers = fleet.workers_on(host.name) if host.is_worker_host else []
    tunnel = None
    if workers and not host.is_broker:
        tunnel = layout.TUNNEL_UNIT
        _add_tunnel(ctx, host, users, dirs, files, units)
    if workers and ctx.versions.poller:
        packages.append(PackageSpec(POLLER_PACKAGE, ctx.versions.poller))
    for worker in workers:
        _add_worker(fleet, worker, tunnel, users, dirs, files, units)
        if worker.id in ctx.creds:
            user = worker.service_user
            path = layout.creds_path(worker.id)
            files.append(FileSpec(path, ctx.creds[worker.id], user, user, 0o600, True, worker.id))
    disabled = tuple(w.id for w in fleet.workers if w.host == host.name and not w.enabled)
    return HostState(
        host,
        tuple(users),
        tuple(dirs),
        tuple(files),
        tuple(units),
        tuple(nats),
        disabled,
        tuple(packages),
    )


def _add_broker(
    ctx: _Context,
    host: Host,
    users: list[UserSpec],
    dirs: list[DirSpec],
    files: list[FileSpec],
    units: list[UnitSpec],
    packages: list[PackageSpec],
) -> None:
    s = ctx.fleet.nats
    auth_config = ctx.auth_config
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
    restart_on: tuple[str, ...] = (path,)
    if ctx.versions.nats_server:
        packages.append(PackageSpec(NATS_PACKAGE, ctx.versions.nats_server))
        restart_on += (f"package {NATS_PACKAGE}",)
    units.append(
        UnitSpec(layout.NATS_UNIT, path, restart_on=restart_on, reload_on=(layout.NATS_CONF,))
    )
    _add_tunnel_login(ctx, users, dirs, files)


def _add_tunnel_login(
    ctx: _Context, users: list[UserSpec], dirs: list[DirSpec], files: list[FileSpec]
) -> None:
    """The broker's side of the tunnels: a user that may only forward to the NATS port."""
    hosts = [
        h.name
        for h in ctx.fleet.hosts
        if not h.is_broker and h.is_worker_host and ctx.fleet.workers_on(h.name)
    ]
    keys = [ctx.tunnel_keys[h] for h in hosts if h in ctx.tunnel_keys]
    if not keys:
        return
    s = ctx.fleet.nats
    user = layout.TUNNEL_USER
    home = layout.TUNNEL_HOME
    users.append(UserSpec(user, home))
    dirs.append(DirSpec(home, user, user, 0o700))
    dirs.append(DirSpec(f"{home}/.ssh", user, user, 0o700))
    options = tunnellogin.authorized_keys_options(s.listen, s.port)
    lines = "".join(f"{options} {k.public}\n" for k in keys)
    files.append(FileSpec(f"{home}/.ssh/authorized_keys", lines.encode(), user, user, 0o600))
    match_block = tunnellogin.sshd_match_block(user, s.listen, s.port)
    files.append(FileSpec(layout.SSHD_TUNNEL_CONF, match_block.encode(), mode=0o644))


def _add_tunnel(
    ctx: _Context,
    host: Host,
    users: list[UserSpec],
    dirs: list[DirSpec],
    files: list[FileSpec],
    units: list[UnitSpec],
) -> None:
    fleet, broker = ctx.fleet, ctx.broker
    user = layout.TUNNEL_USER
    users.append(UserSpec(user, layout.TUNNEL_HOME))
    dirs.append(DirSpec(layout.TUNNEL_DIR, "root", user, 0o750))
    known_hosts = f"{layout.TUNNEL_DIR}/known_hosts"
    restart_on = [known_hosts, layout.TUNNEL_KEY]
    if ctx.broker_key:
        key = " ".join(ctx.broker_key.split()[:2])
        line = f"{_known_hosts_name(broker)} {key}\n"
        files.append(FileSpec(known_hosts, line.encode(), "root", user, 0o644))
    tunnel_key = ctx.tunnel_keys.get(host.name)
    if tunnel_key is not None:
        files.append(FileSpec(layout.TUNNEL_KEY, tunnel_key.private, user, user, 0o600, True))
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
    units.append(UnitSpec(layout.TUNNEL_UNIT, path, restart_on=(path, *restart_on)))


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
        backends.unit_template(worker),
        worker=worker,
        common_env=[*poller_environment(fleet, worker), *backends.unit_environment(worker)],
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
    restart_on = [path, layout.creds_path(worker.id), f"package {POLLER_PACKAGE}"]
    if worker.env_file:
        restart_on.append(worker.env_file)
    units.append(UnitSpec(worker.unit, path, worker=worker.id, restart_on=tuple(restart_on)))
