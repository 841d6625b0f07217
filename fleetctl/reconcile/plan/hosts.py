"""One host's diff: what to create and update of what the selection keeps, the running
units to restart or reload, and what fleetctl owns there that is no longer wanted."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import replace

from fleetctl.reconcile.desired.state import HostState
from fleetctl.reconcile.facts import ObservedHost
from fleetctl.reconcile.plan.changes import diff, orphans
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Change, HostPlan
from fleetctl.reconcile.resources.base import UnitAction
from fleetctl.reconcile.resources.kinds import HostResource
from fleetctl.reconcile.resources.units import UnitSpec


def diff_host(
    state: HostState,
    observed: ObservedHost,
    selection: Selection,
    *,
    live: bool = False,
) -> HostPlan:
    """One host: what to create and update of what the selection keeps, the running units to
    restart or reload (live plans), and what fleetctl owns there that is no longer wanted."""
    name = state.host.name
    kept = [(r, w) for r, w in state.resources() if selection.keeps(name, w)]
    changes, unchanged, wanted = diff(kept, observed.resources, observed.contents)
    changes = [_say_why_dead(c, observed.dead_units) for c in changes]
    wanted |= {f"file {path}" for path in state.unknown_files}
    inputs: dict[str, dict[str, str]] = {}
    if live:
        changes, unchanged, inputs = _restarts(state, observed, kept, changes, unchanged)
    if selection.owns_orphans():
        changes += orphans(observed.managed - wanted, observed.contents)
    notes = tuple(
        f"worker {w} is disabled: not deployed"
        for w in state.disabled_workers
        if selection.keeps_note(w)
    )
    if live:
        notes += runtime_problems(state, observed) + kept_notes(observed)
    if observed.corrupt_manifest:
        notes += (
            "the host's manifest is unreadable: what fleetctl owned there cannot be found, so "
            "nothing is planned for removal; apply writes a new one",
        )
    host = state.host
    return HostPlan(
        host.name,
        host.address,
        tuple(sorted(host.roles)),
        tuple(changes),
        unchanged,
        notes,
        unit_inputs=inputs,
        wanted=frozenset(wanted),
    )


UNCONFIRMED = (
    "an earlier apply left this version unconfirmed: the next apply confirms it, or the host "
    "rolls back to the version before by itself"
)


def kept_notes(observed: ObservedHost) -> tuple[str, ...]:
    """What the host's kept versions say: a change no apply confirmed (its apply died), or
    the host's own rollback of one (fleetctl/hostside/previous.py)."""
    notes: tuple[str, ...] = ()
    gone = observed.kept.rolled_back
    if gone is not None:
        when = gone.get("at")
        at = (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when)) if isinstance(when, int) else "?"
        )
        notes += (f"rolled back by itself at {at}: {gone.get('why')}",)
    if observed.kept.unconfirmed is not None:
        notes += (UNCONFIRMED,)
    return notes


def runtime_problems(state: HostState, observed: ObservedHost) -> tuple[str, ...]:
    """Each installed CLI that needs a Node.js the host does not have (or has too old): the
    CLI would be installed but fail its `--version` check, so the plan says so first."""
    have = _node_major(observed.node or "")
    out = []
    for p in state.packages:
        cli = p.cli
        if cli is None or cli.node is None or (have is not None and have >= cli.node):
            continue
        seen = observed.node or ""
        seen = seen if re.fullmatch(r"v?[0-9][0-9.]*", seen) else "of an unknown version"
        found = f"node {seen} is too old" if observed.node else "there is no node on the PATH"
        out.append(
            f"problem: {cli.package} {cli.version} runs on Node.js >= {cli.node}, and {found} "
            f"of the units (/usr/local/bin, /usr/bin, /bin): install Node.js {cli.node} or newer"
        )
    return tuple(out)


def _node_major(version: str) -> int | None:
    """`v20.11.1` -> 20."""
    head = version.strip().removeprefix("v").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _say_why_dead(change: Change, dead: Mapping[str, str]) -> Change:
    """An enabled unit that is not running is started: the plan says what it is now."""
    if change.kind != UnitSpec.kind or change.action != "update" or change.name not in dead:
        return change
    return replace(change, attrs=(("state", f"start ({dead[change.name]})"),))


def unit_inputs(state: HostState, unit: UnitSpec, observed: ObservedHost) -> dict[str, str]:
    """What a unit runs with: the hash of each file it reads, each package's version, the
    digest of each setting it reads only at start (`HostState.settings`)."""
    files = {f.path: f.sha256 for f in state.files}
    packages = {f"package {p.name}": p.version for p in state.packages}
    recorded = observed.unit_inputs.get(unit.name) or {}
    out = {}
    for trigger in (*unit.restart_on, *unit.reload_on):
        if trigger in state.unknown_files:  # as it was: nothing known says otherwise
            out[trigger] = recorded.get(trigger) or "absent"
            continue
        value = (
            packages.get(trigger)
            or files.get(trigger)
            or state.settings.get(trigger)
            or observed.env_files.get(trigger)
        )
        out[trigger] = value or "absent"
    return out


def _restarts(
    state: HostState,
    observed: ObservedHost,
    kept: list[tuple[HostResource, str | None]],
    changes: list[Change],
    unchanged: int,
) -> tuple[list[Change], int, dict[str, dict[str, str]]]:
    """Running units whose inputs changed since they were last started: restart or reload.
    Units that are being created or started anyway pick up the new inputs by themselves."""
    touched = {c.name for c in changes if c.kind == UnitSpec.kind}
    inputs: dict[str, dict[str, str]] = {}
    out = list(changes)
    for resource, worker in kept:
        if not isinstance(resource, UnitSpec):
            continue
        now = unit_inputs(state, resource, observed)
        inputs[resource.name] = now
        if resource.name in touched:
            continue
        before = observed.unit_inputs.get(resource.name)
        action: UnitAction
        if resource.name in observed.pending:
            action, reason = "restart", "an interrupted apply left it pending"
        elif before is None:
            action, reason = "restart", "started by an earlier fleetctl without a record"
        else:
            differ = [t for t in now if before.get(t) != now[t]]
            if not differ:
                continue
            restart = [t for t in differ if t in resource.restart_on]
            action = "restart" if restart else "reload"
            reason = ", ".join(_trigger_name(t) for t in (restart or differ)) + " changed"
        unchanged -= 1
        out.append(
            Change(
                "update",
                UnitSpec.kind,
                resource.name,
                worker,
                (("action", f"{action}: {reason}"),),
                resource=resource,
                unit_action=action,
            )
        )
    return out, unchanged, inputs


def _trigger_name(trigger: str) -> str:
    if trigger.startswith("package "):
        return trigger
    return trigger.rsplit("/", 1)[-1]
