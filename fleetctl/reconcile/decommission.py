"""Reach a host that left servers.yaml, see what of fleetctl's is still on it, remove it.

The host is reached where fleetctl last applied to it (reconcile/remembered.py), its SSH key
checked against the one it presented then (servers.yaml no longer pins it) or known_hosts.
What to remove is what its manifest lists, and what fleetctl remembers applying there in
case the manifest is unreadable; the plan is the ordinary diff against a host that should
have nothing (reconcile/plan/hosts.py), turned into a teardown program (reconcile/program.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fleetctl.config.model import Fleet
from fleetctl.reconcile import agent_client, facts, remembered
from fleetctl.reconcile.departed import DepartedHost, as_last_applied, as_observed, departed
from fleetctl.reconcile.desired.state import HostState
from fleetctl.reconcile.facts import ObservedHost
from fleetctl.reconcile.hostapply import HostResult, Reporter, run_program
from fleetctl.reconcile.plan.hosts import diff_host
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import HostPlan
from fleetctl.reconcile.program import teardown
from fleetctl.reconcile.remembered import RememberedHost
from fleetctl.reconcile.resources.kinds import HOST_KINDS
from fleetctl.reconcile.sessions import Options, Session, connect, for_each_host, take_lock
from fleetctl.transport.base import TransportError

# A package's removal is harmless when it is already gone, and its version probe may fail
# on a broken install that still has files: remove it whenever the manifest lists it.
_ALWAYS_REMOVED = ("package ",)


def reach(fleet: Fleet, entry: RememberedHost, options: Options, *, lock: bool) -> Session:
    """Connect (and lock), then observe everything the manifest and the memory list."""
    host = entry.host(remembered.path(fleet))
    session = Session(host, connect(host, options))
    try:
        if lock:
            session.lock = take_lock(session.transport, options)
        req = _request(entry, HostState(host))
        if session.lock is not None:
            session.raw = agent_client.observe_under_lock(session.lock, host.name, req)
        else:
            session.raw = agent_client.observe(session.transport, req)
        session.observed = facts.parse(session.raw)
    except TransportError:
        session.close()
        raise
    return session


def _request(entry: RememberedHost, nothing: HostState) -> dict[str, Any]:
    """The agent adds what the host's manifest lists; this adds what was last applied."""
    by_kind: dict[str, list[str]] = {kind: [] for kind in HOST_KINDS}
    for key in entry.resources:
        kind, _, name = key.partition(" ")
        by_kind.get(kind, []).append(name)
    req = facts.request(nothing, with_contents=False)
    for kind, cls in HOST_KINDS.items():
        req |= cls.recall(by_kind[kind])
    return req


def has_manifest(session: Session) -> bool:
    return session.raw.get("manifest") is not None


def still_there(entry: RememberedHost, observed: ObservedHost) -> list[str]:
    """What fleetctl owns on the host and is there: by its manifest, or, when that is
    unreadable, by what was last applied."""
    owned = set(entry.resources) if observed.corrupt_manifest else set(observed.managed)
    return sorted(k for k in owned if k in observed.resources or k.startswith(_ALWAYS_REMOVED))


def teardown_plan(entry: RememberedHost, session: Session) -> HostPlan:
    """The ordinary diff against a host that should have nothing: delete all it owns."""
    observed = dataclasses.replace(
        session.observed,
        managed=frozenset(still_there(entry, session.observed)),
        corrupt_manifest=False,
    )
    plan = diff_host(HostState(session.host), observed, Selection(), live=True)
    note = (
        f"then its state directory (manifest, journal, lock) goes, and fleetctl forgets "
        f"{entry.name}"
    )
    return dataclasses.replace(plan, notes=(*plan.notes, note))


def run(session: Session, plan: HostPlan, reporter: Reporter) -> HostResult:
    prog = teardown(plan)
    result = HostResult(session.host.name, True, steps=len(prog.steps))
    try:
        run_program(session, prog, reporter)
    except TransportError as e:
        result.ok = False
        result.failed_step = getattr(e, "step", "host agent")
        result.error = e.message
        result.steps = 0
    reporter.finished(result)
    return result


def live(fleet: Fleet, options: Options) -> tuple[DepartedHost, ...]:
    """Every remembered host that left servers.yaml, as its manifest says now (read only;
    in parallel); one that cannot be reached as last applied, with the reason."""
    gone = departed(fleet, remembered.load(fleet))
    found: dict[str, DepartedHost] = {}

    def visit(name: str) -> None:
        entry = next(e for e in gone if e.name == name)
        try:
            session = reach(fleet, entry, options, lock=False)
        except TransportError as e:
            found[name] = as_last_applied(entry, e.message)
            return
        session.close()
        found[name] = as_observed(entry, still_there(entry, session.observed))

    for_each_host([e.name for e in gone], visit, options.parallel)
    return tuple(found[e.name] for e in gone)
