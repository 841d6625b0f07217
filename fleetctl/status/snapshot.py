"""The fleet's status as `fleetctl status` starts it (every worker of fleet.yaml, the hosts
left to the caller) and one look at the bus with the newest look at the hosts: shared by
the command and the dashboard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fleetctl.bus.client import BusError, Endpoint
from fleetctl.bus.localfleet import LocalFleet, local_fleet
from fleetctl.config.model import Fleet
from fleetctl.status.busview import look_once
from fleetctl.status.expiry import creds_expiry
from fleetctl.status.hosts import HostsWatch
from fleetctl.status.report import BrokerStatus, FleetStatus, workers_of


def new_status(fleet: Fleet, running_here: LocalFleet | None) -> FleetStatus:
    """Every worker, nothing observed yet; `running_here`: the local fleet, when the bus is
    that one."""
    status = FleetStatus(workers_of(fleet), [], BrokerStatus(), local=running_here is not None)
    expiry = creds_expiry(fleet)
    for w in status.workers:
        w.creds_expires_at = expiry.get(w.worker_id)
        w.started_here = running_here is None or w.worker_id in running_here.workers
    return status


async def look(
    endpoint: Endpoint,
    fleet: Fleet,
    fleet_path: Path,
    *,
    on_server: bool,
    hosts: HostsWatch | None = None,
) -> dict[str, Any]:
    """One look at the bus, and the hosts as `hosts` last saw them (None: not observed), as
    `status --json` prints it (`--no-hosts` without `hosts`; a local fleet has no hosts)."""
    status = new_status(fleet, None if on_server else local_fleet(fleet_path))
    status.hosts_observed = hosts is not None and not status.local
    if status.hosts_observed and hosts is not None:
        status.hosts = list(hosts.hosts or [])
    try:
        await look_once(endpoint, status, fleet)
    except BusError as e:
        status.broker.reachable, status.broker.error = False, str(e)
    return status.as_json(fleet, time.time())
