"""`fleetctl rollback`: every selected host back to the version it had before the last apply
that changed it, on purpose (like `kamal rollback`). A plan first: what each host keeps
(fleetctl/hostside/previous.py) and so what going back changes, shown like any plan; then,
broker hosts first, each host restores it, and its restarted units and pollers are checked.

`--worker` goes back for those workers' own files, units and users only; what their host
shares (the poller's package, the tunnel, the manifest) stays, so `--host` is the whole way
back. A host keeps one version to go back to: a second rollback finds nothing more, unless
the last apply failed (then the version before it is still there).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fleetctl.config.model import Fleet
from fleetctl.reconcile.gate import BusWorkers, NoBus, Workers
from fleetctl.reconcile.hostapply import Apply, HostResult, Reporter, Settings, restore
from fleetctl.reconcile.inputs import gather
from fleetctl.reconcile.kept import going_back
from fleetctl.reconcile.observation import LiveView, live_plan
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Change, HostPlan, Plan
from fleetctl.reconcile.sessions import Options, for_each_host
from fleetctl.transport.base import TransportError

NOTHING_KEPT = "no previous version is kept here: nothing to roll back"


@dataclass
class Pending:
    """The hosts connected, locked and observed; `plan` is what going back changes."""

    view: LiveView
    plan: Plan
    workers: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.plan.summary.empty

    def close(self) -> None:
        self.view.close()


def plan(
    fleet: Fleet, selection: Selection, options: Options, workers: Sequence[str] = ()
) -> Pending:
    """What rolling the selected hosts (or workers) back would change: each host's newest
    kept version, as plan changes."""
    view = live_plan(fleet, gather(fleet), selection, options, lock=True)
    chosen = list(workers) or None
    hosts = []
    for host in view.plan.hosts:
        state = view.desired.hosts.get(host.name)
        if host.error or state is None or not selection.includes_host(host.name, state):
            if host.error:
                hosts.append(dataclasses.replace(host, changes=(), unchanged=0))
            continue
        kept = view.sessions[host.name].observed.kept.newest
        changes: tuple[Change, ...] = ()
        if kept is None:
            notes: tuple[str, ...] = (NOTHING_KEPT,)
        else:
            notes = (f"back to the version before the one {kept.described()}",)
            changes = going_back(kept, chosen)
            if chosen and not changes:
                notes += ("nothing of these workers' own changed in that apply",)
        hosts.append(
            HostPlan(host.name, host.address, host.roles, changes, 0, notes=notes, error=host.error)
        )
    shown = Plan(mode="live", revision=fleet.revision, hosts=tuple(hosts))
    return Pending(view, shown, tuple(workers))


def roll_back(pending: Pending, reporter: Reporter, settings: Settings) -> list[HostResult]:
    """Each host of the plan with something to restore, the bus's hosts first."""
    view = pending.view
    homes = view.plan.bus.homes if view.plan.bus else ()
    todo = [h.name for h in pending.plan.hosts if h.changes and not h.error]
    first = [n for n in todo if n in homes]
    rest = [n for n in todo if n not in first]
    # A bus the plan could not see is not asked: the restored units' check is all there is.
    probe: Workers = BusWorkers(view) if view.bus.reachable else NoBus()
    run = Apply(view, probe, settings, "", reporter)
    results: dict[str, HostResult] = {}
    workers = list(pending.workers) or None

    def one(name: str) -> None:
        started = time.monotonic()
        result = HostResult(name, True, steps=1)
        try:
            restore(run, view.sessions[name], None, workers)
            result.rolled_back = True
        except TransportError as e:
            result.ok = False
            result.failed_step = getattr(e, "step", "restore the previous version")
            result.error = str(e).removeprefix(f"{name}: ")
        result.seconds = time.monotonic() - started
        results[name] = result
        reporter.finished(result)

    try:
        for wave in (first, rest):
            for_each_host(wave, one, view.options.parallel)
    finally:
        probe.close()
    for name, error in view.errors.items():
        results[name] = HostResult(name, False, failed_step="connect and observe", error=error)
        reporter.finished(results[name])
    return [results[h.name] for h in pending.plan.hosts if h.name in results]
