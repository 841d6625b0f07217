"""The bus's diff: streams and consumers to create or update, consumers fleetctl made that
no worker needs, and departed workers' credentials to revoke."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from fleetctl.bus.resources import ConsumerSpec
from fleetctl.config.model import Host
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.plan.changes import change, diff, orphans
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import BusPlan, Change


def diff_bus(
    bus: BusState, observed: ObservedBus, selection: Selection, via: Host
) -> BusPlan | None:
    """The bus: streams and the selected workers' consumers to create or update, consumers
    fleetctl made that no worker needs, and departed workers' credentials to revoke. None
    when the selection leaves the bus out."""
    if not selection.includes_bus(bus.homes):
        return None
    kept = [(r, w) for r, w in bus.resources() if selection.keeps(via.name, w)]
    if selection.workers and not kept:
        return None
    changes, unchanged, wanted = diff(kept, observed.resources, {})
    if selection.owns_orphans():
        changes += [
            _left_behind(c, observed.queued) for c in orphans(observed.managed - wanted, {})
        ]
        changes += [change("delete", r, r.worker, None) for r in bus.revocations]
    return BusPlan(via.name, tuple(changes), unchanged, homes=bus.homes)


def _left_behind(change: Change, queued: Mapping[str, int]) -> Change:
    """A departing worker's consumer with tasks still queued: the plan says how many, and
    that no worker will run them (they stay in the task stream until its max_age)."""
    n = queued.get(f"{change.kind} {change.name}", 0)
    if change.kind != ConsumerSpec.kind or not n:
        return change
    note = f"{n} queued task{'s' if n != 1 else ''} left unrun (kept until max_age)"
    return replace(change, attrs=(*change.attrs, ("queued", note)))
