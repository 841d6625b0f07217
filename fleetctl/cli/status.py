"""`fleetctl status`: every worker, host and the broker on one screen; `--check` for cron."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable

import click

from fleetctl.bus.client import BusError, Endpoint
from fleetctl.bus.localfleet import default_state_dir, local_fleet
from fleetctl.cli.context import AppContext, pass_app
from fleetctl.cli.options import bus_options, json_option, no_hosts_option, watch_option
from fleetctl.config.model import Fleet
from fleetctl.identity.natsaccess import ADMIN_USER, SYSTEM_USER
from fleetctl.status.busview import ClusterWay, follow, look_once
from fleetctl.status.hosts import HOSTS_EVERY, HostsWatch, look_at_hosts
from fleetctl.status.lastlook import count_new_dead, last_dead_seq, remember_look
from fleetctl.status.report import FleetStatus
from fleetctl.status.snapshot import new_status
from fleetctl.tasks.reach import BusOptions, reach_as
from fleetctl.ui.status_view import Watching, render
from fleetctl.ui.terminal import out

BUS_EVERY = 1.0  # --watch: seconds between looks at the bus (heartbeats arrive meanwhile)


@click.command()
@watch_option
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 when anything needs a human (a worker not heartbeating, a unit down, a "
    "backlog over status.max_lag, new dead letters, credentials expiring; on a cluster, a "
    "broker down or a stream's copy lagging over status.max_replica_lag).",
)
@no_hosts_option
@json_option
@bus_options
@pass_app
def status(
    app: AppContext, watch: bool, check: bool, no_hosts: bool, as_json: bool, bus: BusOptions
) -> None:
    """The fleet now: workers (state, heartbeat, backlog), hosts (units), the broker.

    Read as fleet-admin (with --server, --creds is fleet-admin's). Hosts are observed over
    SSH as a read-only plan does, except for a local fleet (`fleetctl up`). Dead letters are
    counted as new since the last look from this machine. `--watch --json` prints one JSON
    document per line per update."""
    fleet = app.fleet(local=True)
    running_here = None if bus.server else local_fleet(app.fleet_path)
    local = running_here is not None
    state_dir = default_state_dir(app.fleet_path)
    status = new_status(fleet, running_here)
    observing = status.hosts_observed = not (local or no_hosts)
    watching = Watching(BUS_EVERY, HOSTS_EVERY if observing else None)
    before = last_dead_seq(state_dir)
    watched = HostsWatch(fleet, bus.ssh) if watch and observing else None
    if watched is not None:  # the first look runs meanwhile; then one every HOSTS_EVERY
        watched.start()
    hosts = _hosts_meanwhile(fleet, bus, status) if observing and not watch else None

    def body(now: float | None = None) -> dict[str, object]:
        """The status at `now` (Unix seconds; --watch: when it judged the heartbeats)."""
        count_new_dead(status.broker, before)
        if watched is not None:  # --watch: the newest look at the hosts
            status.hosts = watched.hosts or []
            watching.hosts_at = watched.at
        return status.as_json(fleet, time.time() if now is None else now)

    brokers = (
        running_here.brokers if running_here is not None else tuple(h.name for h in fleet.brokers)
    )
    users = (ADMIN_USER, SYSTEM_USER) if len(brokers) > 1 else (ADMIN_USER,)
    try:
        with reach_as(fleet, app.fleet_path, bus, users) as endpoints:
            endpoint = endpoints[ADMIN_USER]
            cluster = ClusterWay(brokers, endpoints.get(SYSTEM_USER)) if len(brokers) > 1 else None
            if watch:
                _watch(endpoint, status, fleet, body, as_json, watching, cluster)
            else:
                asyncio.run(look_once(endpoint, status, fleet, cluster))
    except BusError as e:
        status.broker.reachable, status.broker.error = False, str(e)
    if hosts is not None:
        hosts.join()
    if status.broker.reachable:
        remember_look(state_dir, status.broker)
    if not watch:
        shown = body()
        if as_json:
            click.echo(json.dumps(shown, indent=2))
        else:
            out().print(render(shown))
    if not status.broker.reachable or (check and status.problems(fleet, time.time())):
        sys.exit(1)


def _hosts_meanwhile(fleet: Fleet, bus: BusOptions, status: FleetStatus) -> threading.Thread:
    """Observe the hosts over SSH in a thread while the bus is read."""

    def observe() -> None:
        status.hosts = look_at_hosts(fleet, bus.ssh)

    thread = threading.Thread(target=observe, name="status-hosts", daemon=True)
    thread.start()
    return thread


def _watch(
    endpoint: Endpoint,
    status: FleetStatus,
    fleet: Fleet,
    body: Callable[[float], dict[str, object]],
    as_json: bool,
    watching: Watching,
    cluster: ClusterWay | None,
) -> None:
    """Until Ctrl-C: a live screen, or one JSON line per update."""
    from rich.live import Live

    every = watching.bus_every
    try:
        if as_json:

            def line(now: float) -> None:
                click.echo(json.dumps(body(now)))
                sys.stdout.flush()

            asyncio.run(follow(endpoint, status, fleet, line, every=every, cluster=cluster))
            return
        with Live(console=out(), auto_refresh=False) as live:

            def update(now: float) -> None:
                live.update(render(body(now), watching), refresh=True)

            asyncio.run(follow(endpoint, status, fleet, update, every=every, cluster=cluster))
    except KeyboardInterrupt:
        return
