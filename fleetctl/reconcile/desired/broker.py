"""The broker's resources: nats-server (its user, store, config, unit, binary) and the
broker's end of the tunnels."""

from __future__ import annotations

import hashlib
import json

from fleetctl import layout
from fleetctl.bus.resources import TASK_MAX_BYTES
from fleetctl.config.model import Host
from fleetctl.config.schema import NatsSettings
from fleetctl.reconcile.desired.context import Context, Parts
from fleetctl.reconcile.desired.tunnel import add_tunnel_login
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.packages import NATS_PACKAGE, PackageSpec
from fleetctl.reconcile.resources.units import UnitSpec
from fleetctl.reconcile.resources.users import UserSpec
from fleetctl.render.engine import Raw, render_nats_conf, render_unit

# The unit input standing for nats-server.conf's settings that only a restart applies.
NATS_STARTUP = "nats-server startup settings"


def add_broker(ctx: Context, host: Host, parts: Parts) -> None:
    s = ctx.fleet.nats
    auth_config = ctx.inputs.auth_config
    parts.users.append(UserSpec(layout.NATS_USER, "/var/lib/nats"))
    parts.dirs.append(DirSpec(s.store_dir, layout.NATS_USER, layout.NATS_USER, 0o700))
    conf = broker_config(s, host.name, auth_config)
    parts.files.append(FileSpec(layout.NATS_CONF, conf.encode(), "root", layout.NATS_USER, 0o640))
    unit = render_unit(
        "systemd/nats-server.service.j2",
        host=host,
        nats_user=layout.NATS_USER,
        nats_bin=layout.NATS_BIN,
        conf=layout.NATS_CONF,
        store_dir=s.store_dir,
        listen=s.listen,
    )
    path = layout.unit_path(layout.NATS_UNIT)
    parts.files.append(FileSpec(path, unit.encode()))
    restart_on: tuple[str, ...] = (path, NATS_STARTUP)
    if ctx.versions.nats_server:
        parts.packages.append(PackageSpec(NATS_PACKAGE, ctx.versions.nats_server))
        restart_on += (f"package {NATS_PACKAGE}",)
    parts.units.append(
        UnitSpec(layout.NATS_UNIT, path, restart_on=restart_on, reload_on=(layout.NATS_CONF,))
    )
    add_tunnel_login(ctx, parts)


def broker_config(s: NatsSettings, server_name: str, auth_config: str | None) -> str:
    """nats-server.conf for a broker (and for `fleetctl up`'s local one)."""
    return render_nats_conf(
        "nats/nats-server.conf.j2",
        **_broker_startup(s, server_name),
        max_payload=TASK_MAX_BYTES,
        auth=Raw(auth_config) if auth_config else None,
    )


def _broker_startup(s: NatsSettings, server_name: str) -> dict[str, str | int | None]:
    """The settings of nats-server.conf that nats-server reads only at start: a reload
    (SIGHUP) with any of them changed fails as a whole ("config reload not supported"), the
    rest of the new config included, and the server runs on with the old one."""
    return {
        "host_name": server_name,
        "listen": f"{s.listen}:{s.port}",
        # HTTP monitoring has no authentication: off unless fleet.yaml sets monitor_port.
        "monitor": None if s.monitor_port is None else f"127.0.0.1:{s.monitor_port}",
        "store_dir": s.store_dir,
        "max_memory_store": s.max_memory_store,
        "max_file_store": s.max_file_store,
    }


def broker_startup_digest(s: NatsSettings, server_name: str) -> str:
    """What `NATS_STARTUP` is worth: a change restarts nats-server instead of reloading it."""
    canonical = json.dumps(_broker_startup(s, server_name), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
