"""--worker / --host -> a plan Selection, refusing names the fleet does not have."""

from __future__ import annotations

from fleetctl.cli.context import fail
from fleetctl.config.model import Fleet
from fleetctl.config.pydantic_errors import did_you_mean
from fleetctl.reconcile.plan.selection import Selection


def select(fleet: Fleet, workers: tuple[str, ...], hosts: tuple[str, ...]) -> Selection:
    ids = [w.id for w in fleet.workers]
    for wid in workers:
        if fleet.worker(wid) is None:
            hint = did_you_mean(wid, ids)
            fail(f"unknown worker {wid!r}", hint or "see `worker_id:` in fleet.yaml")
    names = [h.name for h in fleet.hosts]
    for name in hosts:
        if name not in names:
            hint = did_you_mean(name, names)
            fail(f"unknown host {name!r}", hint or "see `name:` in servers.yaml")
    chosen = [w for w in fleet.workers if w.id in workers]
    return Selection(
        frozenset(hosts),
        frozenset(workers),
        worker_hosts=frozenset(w.host for w in chosen if w.enabled),
        homes=frozenset(w.host for w in chosen),
    )
