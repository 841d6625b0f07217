"""The broker's resources: nats-server (its user, store, config, unit, binary), on a cluster
its route TLS, and the broker's end of the tunnels."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from fleetctl import layout
from fleetctl.bus.resources import TASK_MAX_BYTES
from fleetctl.config.model import Fleet, Host
from fleetctl.config.schema import NatsSettings
from fleetctl.reconcile.desired.context import Context, Parts
from fleetctl.reconcile.desired.tunnel import add_tunnel_login
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.packages import NATS_PACKAGE, PackageSpec
from fleetctl.reconcile.resources.units import UnitSpec
from fleetctl.reconcile.resources.users import UserSpec
from fleetctl.render.engine import Raw, is_ip_address, render_nats_conf, render_unit

# The unit input standing for nats-server.conf's settings that only a restart applies.
NATS_STARTUP = "nats-server startup settings"
CLUSTER_STORE = "cluster"  # a cluster's JetStream store, under nats.store_dir
CLUSTER_NAME = "fleet"
# Lame duck mode (a cluster broker's stop signal, SIGUSR2): JetStream leaders move to the
# other brokers at once, clients are told, and after the grace period they are closed
# spread over the rest of the duration (at most a second apart), then the server exits.
# nats-server's least duration is 30 s; systemd waits TimeoutStopSec for it.
LAME_DUCK_GRACE = "3s"
LAME_DUCK_DURATION = "30s"
CLUSTER_STOP_TIMEOUT = 60


@dataclass(frozen=True)
class ClusterConf:
    """A broker's `cluster {}` block: where it listens for routes, every broker's route
    URL (its own included: nats-server skips itself), and its TLS files."""

    listen: str
    routes: tuple[str, ...]
    ca_file: str
    cert_file: str
    key_file: str
    name: str = CLUSTER_NAME


def cluster_conf(
    fleet: Fleet,
    *,
    ca_file: str = layout.NATS_TLS_CA,
    cert_file: str = layout.NATS_TLS_CERT,
    key_file: str = layout.NATS_TLS_KEY,
) -> ClusterConf | None:
    """None with one broker. Routes listen on every address (the other brokers dial the
    address servers.yaml gives; only a certificate fleetctl's CA signed is let in)."""
    if not fleet.is_cluster:
        return None
    port = fleet.nats.cluster_port
    routes = tuple(f"nats-route://{_url_host(h.address)}:{port}" for h in fleet.brokers)
    return ClusterConf(f"0.0.0.0:{port}", routes, ca_file, cert_file, key_file)


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def add_broker(ctx: Context, host: Host, parts: Parts) -> None:
    fleet, s = ctx.fleet, ctx.fleet.nats
    auth_config = ctx.inputs.auth_config
    cluster = cluster_conf(fleet)
    parts.users.append(UserSpec(layout.NATS_USER, "/var/lib/nats"))
    parts.dirs.append(DirSpec(s.store_dir, layout.NATS_USER, layout.NATS_USER, 0o700))
    conf = broker_config(s, host.name, auth_config, cluster)
    parts.files.append(FileSpec(layout.NATS_CONF, conf.encode(), "root", layout.NATS_USER, 0o640))
    reload_on: tuple[str, ...] = (layout.NATS_CONF,)
    if cluster is not None:
        reload_on += _add_route_tls(ctx, host, parts)
    peers = [h.address for h in fleet.brokers if h.name != host.name] if cluster else []
    unit = render_unit(
        "systemd/nats-server.service.j2",
        host=host,
        nats_user=layout.NATS_USER,
        nats_bin=layout.NATS_BIN,
        conf=layout.NATS_CONF,
        store_dir=s.store_dir,
        listen=s.listen,
        cluster=cluster is not None,
        # Routes come from and go to the other brokers: allowed by address when every one
        # is an IP address (IPAddressAllow= takes no host names).
        peers=peers if all(is_ip_address(p) for p in peers) else None,
        stop_timeout=CLUSTER_STOP_TIMEOUT,
    )
    path = layout.unit_path(layout.NATS_UNIT)
    parts.files.append(FileSpec(path, unit.encode()))
    restart_on: tuple[str, ...] = (path, NATS_STARTUP)
    if ctx.versions.nats_server:
        parts.packages.append(PackageSpec(NATS_PACKAGE, ctx.versions.nats_server))
        restart_on += (f"package {NATS_PACKAGE}",)
    parts.units.append(UnitSpec(layout.NATS_UNIT, path, restart_on=restart_on, reload_on=reload_on))
    add_tunnel_login(ctx, host, parts)


def _add_route_tls(ctx: Context, host: Host, parts: Parts) -> tuple[str, ...]:
    """The CA bundle, the broker's certificate and its key (a secret); those apply has yet
    to issue are planned as generated. A reload picks up new ones (nats-server reloads a
    cluster's TLS on SIGHUP)."""
    tls = ctx.inputs.route_tls
    mine = tls.certs.get(host.name) if tls is not None else None
    user = layout.NATS_USER
    parts.dirs.append(DirSpec(layout.NATS_TLS_DIR, "root", user, 0o750))
    wanted = (
        (layout.NATS_TLS_CA, tls.ca_bundle if tls else None, False),
        (layout.NATS_TLS_CERT, mine.cert if mine else None, False),
        (layout.NATS_TLS_KEY, mine.key if mine else None, True),
    )
    for path, content, secret in wanted:
        parts.files.append(
            FileSpec(path, content or b"", "root", user, 0o640, secret, generated=content is None)
        )
    return tuple(path for path, _, _ in wanted)


def broker_config(
    s: NatsSettings, server_name: str, auth_config: str | None, cluster: ClusterConf | None = None
) -> str:
    """nats-server.conf for a broker (and for `fleetctl up`'s local ones)."""
    return render_nats_conf(
        "nats/nats-server.conf.j2",
        **_broker_startup(s, server_name, cluster),
        max_payload=TASK_MAX_BYTES,
        auth=Raw(auth_config) if auth_config else None,
        cluster=cluster,
        brokers=len(cluster.routes) if cluster else 1,
    )


def _broker_startup(
    s: NatsSettings, server_name: str, cluster: ClusterConf | None = None
) -> dict[str, str | int | None]:
    """The settings of nats-server.conf that nats-server reads only at start: a reload
    (SIGHUP) with any of them changed fails as a whole ("config reload not supported"), the
    rest of the new config included, and the server runs on with the old one. A cluster
    adds its route listener and the lame duck settings (a single broker's are as before)."""
    settings: dict[str, str | int | None] = {
        "host_name": server_name,
        "listen": f"{s.listen}:{s.port}",
        # HTTP monitoring has no authentication: off unless fleet.yaml sets monitor_port.
        "monitor": None if s.monitor_port is None else f"127.0.0.1:{s.monitor_port}",
        # A cluster's own directory under it: a broker that ran alone before must not load
        # its old streams and consumers into the cluster's (their state would be taken for
        # the new streams', docs/operations.md); what it held stays beside, unused.
        "store_dir": s.store_dir if cluster is None else f"{s.store_dir}/{CLUSTER_STORE}",
        "max_memory_store": s.max_memory_store,
        "max_file_store": s.max_file_store,
    }
    if cluster is not None:
        settings |= {
            "cluster_listen": cluster.listen,
            "lame_duck_grace_period": LAME_DUCK_GRACE,
            "lame_duck_duration": LAME_DUCK_DURATION,
        }
    return settings


def broker_startup_digest(s: NatsSettings, server_name: str, cluster: ClusterConf | None) -> str:
    """What `NATS_STARTUP` is worth: a change restarts nats-server instead of reloading it."""
    canonical = json.dumps(_broker_startup(s, server_name, cluster), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
