"""The whole plan: every planned host's diff and the bus's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from fleetctl.layout import NATS_UNIT
from fleetctl.reconcile.desired.state import FleetState
from fleetctl.reconcile.facts import ObservedBus, ObservedHost
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.hosts import diff_host
from fleetctl.reconcile.plan.selection import EVERYTHING, Selection
from fleetctl.reconcile.plan.types import BusPlan, HostPlan, Plan


def planned_hosts(desired: FleetState, selection: Selection) -> list[str]:
    """The hosts a plan covers, in servers.yaml order: the selected ones, and the hosts the
    bus lives on (any of them may be the way to it) whenever the bus is part of the plan."""
    bus = desired.bus
    first = bus.homes[0] if bus.homes else None
    with_bus = first is not None and (
        diff_bus(bus, ObservedBus(), selection, desired.hosts[first].host) is not None
    )
    return [
        name
        for name, state in desired.hosts.items()
        if selection.includes_host(name, state) or (with_bus and name in bus.homes)
    ]


def way_in(
    homes: Sequence[str], planned: Sequence[str], errors: Mapping[str, str], bus: ObservedBus
) -> str | None:
    """The home the bus is reached through: the one it was read through, else the first
    planned home that could be observed (None: no way in, so the bus is not planned)."""
    usable = [h for h in homes if h in planned and h not in errors]
    if bus.via:
        return bus.via if bus.via in usable else None
    return usable[0] if usable else None


def make_plan(
    desired: FleetState,
    observed: Mapping[str, ObservedHost] | None = None,
    *,
    bus: ObservedBus | None = None,
    selection: Selection = EVERYTHING,
    revision: str = "",
    warnings: tuple[str, ...] = (),
    errors: Mapping[str, str] | None = None,
) -> Plan:
    """Diff every planned host and the bus; `observed=None` is the offline plan (nothing
    known). The bus is diffed against `bus`, or against nothing when it was not observed;
    it is not planned when none of its hosts could be observed (`way_in`)."""
    plans = []
    errors = errors or {}
    names = planned_hosts(desired, selection)
    for name in names:
        state = desired.hosts[name]
        if name in errors:
            host = state.host
            roles = tuple(sorted(host.roles))
            plans.append(HostPlan(name, host.address, roles, (), 0, error=errors[name]))
            continue
        seen = (observed or {}).get(name, ObservedHost())
        plans.append(diff_host(state, seen, selection, live=observed is not None))
    bus_plan = None
    on_bus = bus or ObservedBus()
    home = way_in(desired.bus.homes, names, errors, on_bus)
    if home is not None:
        via = desired.hosts[home].host
        bus_plan = diff_bus(desired.bus, on_bus, selection, via)
        if bus_plan is not None and on_bus.cluster is not None:
            bus_plan = replace(bus_plan, meta_leader=on_bus.cluster.meta_leader)
        installed = (observed or {}).get(via.name, ObservedHost()).resources
        if bus_plan is not None and not on_bus.reachable and f"unit {NATS_UNIT}" in installed:
            # nats-server is installed but does not answer: what the bus holds is unknown.
            why = f"{NATS_UNIT} is installed on {via.name} but {on_bus.error or 'does not answer'}"
            bus_plan = BusPlan(via.name, (), 0, error=why, homes=desired.bus.homes)
    mode: Literal["offline", "live"] = "offline" if observed is None else "live"
    return Plan(mode, revision, tuple(plans), warnings, bus_plan)
