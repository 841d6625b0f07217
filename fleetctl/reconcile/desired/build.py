"""The desired state of the whole fleet: each host by its roles, and the bus."""

from __future__ import annotations

from fleetctl import layout
from fleetctl.config.model import Fleet, Host
from fleetctl.config.tunnels import tunnels_of
from fleetctl.reconcile.desired.broker import (
    NATS_STARTUP,
    add_broker,
    broker_startup_digest,
    cluster_conf,
)
from fleetctl.reconcile.desired.bus import bus_state
from fleetctl.reconcile.desired.context import Context, Parts
from fleetctl.reconcile.desired.repos import add_repos
from fleetctl.reconcile.desired.state import FleetState, HostState
from fleetctl.reconcile.desired.tunnel import add_tunnels, unknown_broker_keys
from fleetctl.reconcile.desired.workers import add_packages, add_worker
from fleetctl.reconcile.inputs import NO_INPUTS, Inputs


def desired_state(fleet: Fleet, inputs: Inputs = NO_INPUTS) -> FleetState:
    """Hosts and bus from the fleet and what `inputs.gather` read. Without inputs (tests,
    golden files) there are no creds, tunnel keys or versions to plan."""
    context = Context(fleet, inputs)
    hosts = {host.name: _host_state(context, host) for host in fleet.hosts}
    return FleetState(hosts, bus_state(fleet, inputs))


def _host_state(ctx: Context, host: Host) -> HostState:
    fleet = ctx.fleet
    parts = Parts()
    settings: dict[str, str] = {}
    if host.is_broker:
        add_broker(ctx, host, parts)
        cluster = cluster_conf(fleet)
        settings[NATS_STARTUP] = broker_startup_digest(fleet.nats, host.name, cluster)
    workers = fleet.workers_on(host.name) if host.is_worker_host else []
    tunnels: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    if workers:
        tunnels = add_tunnels(ctx, host, parts) if tunnels_of(fleet, host) else ()
        if tunnels and unknown_broker_keys(ctx, host):
            unknown = (layout.TUNNEL_KNOWN_HOSTS,)
        add_packages(ctx, workers, parts)
        add_repos(ctx, host, workers, parts)
    for worker in workers:
        add_worker(ctx, worker, tunnels, parts)
    disabled = tuple(w.id for w in fleet.workers if w.host == host.name and not w.enabled)
    return HostState(
        host,
        tuple(parts.users),
        tuple(parts.dirs),
        tuple(parts.files),
        tuple(parts.units),
        disabled,
        tuple(parts.packages),
        unknown,
        settings,
        tuple(parts.mirrors),
        tuple(parts.usage_paths),
    )
