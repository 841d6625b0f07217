"""Each host's units and its repositories' disk use for `fleetctl status`, from the same
observation as a live plan (read only, no lock). A local fleet (`fleetctl up`) has no hosts to
reach over SSH."""

from __future__ import annotations

import dataclasses
from typing import Any

from fleetctl.config.model import Fleet
from fleetctl.reconcile.desired.repos import MIN_FREE_BYTES
from fleetctl.status.report import HostStatus, RepoDisk


def observe_hosts(fleet: Fleet, options: Any) -> list[HostStatus]:
    """Each host reachable or not, and its units, from a read-only live plan's observation."""
    from fleetctl.reconcile.inputs import gather
    from fleetctl.reconcile.observation import live_plan
    from fleetctl.reconcile.plan.selection import Selection

    options = dataclasses.replace(options, with_usage=True)
    view = live_plan(fleet, gather(fleet), Selection(), options, lock=False)
    view.close()
    hosts = []
    for name, state in view.desired.hosts.items():
        if name in view.errors:
            hosts.append(HostStatus(name, False, view.errors[name]))
            continue
        seen = view.sessions[name].observed
        units: dict[str, str] = {}
        for unit in state.units:
            if not unit.enabled:
                continue
            if unit.name in seen.dead_units:
                units[unit.name] = seen.dead_units[unit.name]
            elif unit.key in seen.resources:
                units[unit.name] = "active"
            else:
                units[unit.name] = "not installed"
        disk = None
        if state.usage_paths:
            used = {p: seen.usage.get(p) for p in state.usage_paths}
            disk = RepoDisk(used, seen.free_bytes, MIN_FREE_BYTES)
        hosts.append(HostStatus(name, True, units=units, repos=disk))
    return hosts
