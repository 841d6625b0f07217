"""One host's part of a plan -> the agent's steps, in the order that keeps the host sound.

Pure: a HostPlan (and what was observed) in, data out. Each resource kind gives its own steps
(fleetctl/reconcile/resources/); this module puts them in order. Tests assert the exact
steps, the way Kamal's tests assert command lines.

Order: keep the previous version (apply's rollback: fleetctl/hostside/previous.py); journal
of pending restarts; stop orphan units; users, dirs, packages, files; remove orphans; one
daemon-reload; start, restart, reload units (the pollers' at once, each draining); the
manifest last, then the journal is cleared. An apply killed anywhere is finished by the next
one (files are renamed into place whole, the units still to restart are in the journal), or
undone by the host itself when apply asked for a confirmation it never sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetctl import layout
from fleetctl.hostside import watchdog_program
from fleetctl.reconcile.facts import JOURNAL, MANIFEST, ObservedHost
from fleetctl.reconcile.plan.types import Change, HostPlan
from fleetctl.reconcile.resources.base import HostKind, Staged, Step
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.kinds import HOST_KINDS
from fleetctl.reconcile.resources.packages import PackageSpec, uploads
from fleetctl.reconcile.resources.units import UnitSpec, systemctl
from fleetctl.reconcile.sessions import LOCK_FILE
from poller.backends import CliPackage

MANIFEST_FORMAT = 1
PREVIOUS_LOG = f"{layout.STATE_DIR}/previous.json"  # the kept versions (hostside/previous.py)
WATCHDOG = f"{layout.STATE_DIR}/watchdog.py"
WATCHDOG_JOURNAL = f"{layout.STATE_DIR}/watchdog.log"
KEEP_LABEL = "keep the previous version"
STOP_MARGIN = 60  # seconds the agent allows a poller's stop beyond its TimeoutStopSec
STOP_BOUND = 6 * 3600  # a stop whose unit's TimeoutStopSec is unknown here (a removed worker)
PROGRAM_TIMEOUT = 1800  # seconds for a program's steps besides its pollers' stops


@dataclass(frozen=True)
class Keep:
    """Keep the previous version as generation `generation` (apply's id, the same on every
    host): apply rolls a host back to it when the host fails its checks. With
    `confirm_timeout`, the host does so by itself when apply has not confirmed it within that
    many seconds of the program's end."""

    generation: str
    confirm_timeout: float | None = None


@dataclass(frozen=True)
class Drain:
    """How a poller that stops (restarted, removed) drains: its tasks in flight are handed
    back after `seconds` (0: at once, `--no-drain`); None: for as long as its unit's
    TimeoutStopSec lets it (the poller's own `drain_timeout`)."""

    seconds: float | None = None

    def op(self) -> dict[str, Any] | None:
        return None if self.seconds is None else {"seconds": self.seconds}


@dataclass(frozen=True)
class HostProgram:
    steps: tuple[Step, ...]
    poller_version: str | None = None  # a wheelhouse of this version must be uploaded first
    nats_server: bool = False  # the nats-server binary must be uploaded first
    llm_clis: tuple[CliPackage, ...] = ()  # their bundles must be uploaded first
    generation: str | None = None  # the kept previous version's (Keep)

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def timeout(self) -> float:
        """How long the agent may take: the steps, plus each poller stop's own bound."""
        stops = sum(_stop_bound(s.op) for s in self.steps)
        return PROGRAM_TIMEOUT + stops


def _stop_bound(op: Mapping[str, Any]) -> float:
    if op.get("op") == "parallel":
        return max((_stop_bound(s) for s in op["steps"]), default=0)
    return float(op.get("timeout", 0)) if op.get("op") == "systemctl" else 0.0


def program(
    plan: HostPlan,
    observed: ObservedHost,
    *,
    revision: str,
    applied_by: str,
    now: int,
    nats_sha256: str | None = None,
    cli_sha256: Mapping[str, str] | None = None,
    keep: Keep | None = None,
    drain: Drain | None = None,
) -> HostProgram:
    """`now` (seconds since the epoch) is recorded in the manifest as the apply's time;
    `cli_sha256` has each LLM CLI bundle's sha256 by package name (clicache.Bundle); `keep`:
    keep the previous version first; `drain`: how stopping pollers drain (None: as their
    units say)."""
    host_changes = list(plan.changes)
    if not host_changes:
        return HostProgram(())
    staged = Staged(nats_sha256, cli_sha256 or {})
    drain = drain or Drain()
    steps: list[Step] = []
    if keep is not None:
        steps.append(_begin(plan, keep, revision=revision, applied_by=applied_by, now=now))
    creates = [c for c in host_changes if c.action != "delete"]
    deletes = [c for c in host_changes if c.action == "delete"]
    unit_changes = [c for c in creates if c.kind == UnitSpec.kind]
    pending = sorted({c.name for c in unit_changes})
    if pending:
        steps.append(_write("record pending restarts", JOURNAL, _json({"restart": pending}), 0o600))
    steps += _stops(deletes, drain)
    made = sorted((c for c in creates if c.kind != UnitSpec.kind), key=lambda c: _kind(c).order)
    for c in made:
        if not isinstance(c.resource, HostKind) or c.resource.kind != c.kind:
            raise ValueError(f"cannot apply {c.kind} {c.name}")
        steps += c.resource.steps(staged)
    # What a worker may still run during its graceful stop goes after the restarts.
    late = [c for c in deletes if _known(c) and _kind(c).removed_late(c.name)]
    steps += _removals([c for c in deletes if c not in late])
    if _touches_unit_files(host_changes):
        steps.append(Step("systemctl daemon-reload", systemctl("daemon-reload")))
    for c in sorted((c for c in unit_changes if not _poller(c)), key=_start_order):
        steps.append(UnitSpec.action_step(c.name, c.unit_action))
    pollers = sorted((c for c in unit_changes if _poller(c)), key=_start_order)
    steps += _at_once([_poller_step(c, drain) for c in pollers])
    steps += _removals(late)
    steps.append(
        _write(
            "write the manifest",
            MANIFEST,
            _json(_manifest(plan, observed, revision=revision, applied_by=applied_by, now=now)),
            0o600,
        )
    )
    if pending:
        steps.append(Step("clear the journal", {"op": "remove_file", "path": JOURNAL}))
    needs = uploads(c.resource for c in made if isinstance(c.resource, PackageSpec))
    generation = keep.generation if keep is not None else None
    return HostProgram(
        tuple(steps), needs.poller_version, needs.nats_server, needs.llm_clis, generation
    )


def _begin(plan: HostPlan, keep: Keep, *, revision: str, applied_by: str, now: int) -> Step:
    """The first step: a new generation of the kept previous version, each worker's part of
    it named (`rollback --worker`), and, with a confirm timeout, the watchdog armed."""
    op: dict[str, Any] = {
        "op": "begin_previous",
        "log": PREVIOUS_LOG,
        "id": keep.generation,
        "revision": revision,
        "applied_at": now,
        "applied_by": applied_by,
        "owners": owners(plan),
    }
    if keep.confirm_timeout is not None:
        op["confirm"] = {
            "timeout": keep.confirm_timeout,
            "lock": LOCK_FILE,
            "program": WATCHDOG,
            "source": watchdog_program(),
            "journal": WATCHDOG_JOURNAL,
        }
    return Step(KEEP_LABEL, op)


def owners(plan: HostPlan) -> dict[str, str]:
    """Which worker each path, unit and user the plan changes belongs to, as the host's kept
    version names them (`path P`, `unit U`, `user N`)."""
    found: dict[str, str] = {}
    for c in plan.changes:
        if c.worker is None or not _known(c):
            continue
        if c.kind in (UnitSpec.kind, "user"):
            found[f"{c.kind} {c.name}"] = c.worker
        else:
            path = _kind(c).removed_path(c.name)
            if path is not None or c.kind == DirSpec.kind:
                found[f"path {path or c.name}"] = c.worker
    return dict(sorted(found.items()))


def confirm_step(generation: str) -> Step:
    """Apply checked the host: the kept version stays, and the watchdog stands down."""
    return Step(
        "confirm the new version",
        {"op": "confirm_previous", "log": PREVIOUS_LOG, "id": generation},
    )


def restore_step(
    generation: str | None = None, workers: Sequence[str] | None = None, drain: Drain | None = None
) -> Step:
    """Back to the kept previous version: generation `generation` (None: the newest kept),
    only `workers`' part of it when given."""
    op: dict[str, Any] = {"op": "restore_previous", "log": PREVIOUS_LOG, "id": generation}
    if workers is not None:
        op["workers"] = sorted(workers)
    drained = (drain or Drain()).op()
    if drained is not None:
        op["drain"] = drained
    return Step("restore the previous version", op)


def _poller_step(change: Change, drain: Drain) -> Step:
    """A poller's start, restart or stop, allowed its unit's stop timeout, drained as asked."""
    step = UnitSpec.action_step(change.name, change.unit_action)
    if change.unit_action not in ("restart", "stop"):
        return step
    return _draining(step, change, drain)


def _draining(step: Step, change: Change, drain: Drain) -> Step:
    unit = change.resource if isinstance(change.resource, UnitSpec) else None
    stop = unit.stop_timeout if unit is not None and unit.stop_timeout else None
    op = dict(step.op, timeout=stop + STOP_MARGIN if stop else STOP_BOUND)
    drained = drain.op()
    if drained is not None:
        op["drain"] = drained
    return Step(step.label, op)


def _at_once(steps: list[Step]) -> list[Step]:
    """Several pollers' steps as one: they stop (and drain) at the same time."""
    if len(steps) < 2:
        return steps
    label = ", ".join(s.label for s in steps)
    return [Step(label, {"op": "parallel", "steps": [s.op for s in steps]})]


def teardown(plan: HostPlan) -> HostProgram:
    """Remove everything a host's plan deletes, and then fleetctl's state there (the
    manifest, the journal, the lock file, the staging area): `fleetctl decommission`. The
    previous versions the host kept go first (they live beside what they replaced), then the
    units are stopped and disabled, so no process holds a user or file being removed."""
    deletes = [c for c in plan.changes if c.action == "delete"]
    forget = Step("forget the previous versions", {"op": "purge_previous", "log": PREVIOUS_LOG})
    steps = [forget, *_stops(deletes)]
    steps += _removals(deletes)
    steps += [
        Step(f"remove {d} if empty", {"op": "remove_empty_dir", "path": d})
        for d in _emptied_roots(deletes)
    ]
    if _touches_unit_files(deletes):
        steps.append(Step("systemctl daemon-reload", systemctl("daemon-reload")))
    steps.append(Step(f"remove {layout.STATE_DIR}", {"op": "remove_dir", "path": layout.STATE_DIR}))
    return HostProgram(tuple(steps))


def _kind(change: Change) -> type[HostKind]:
    return HOST_KINDS[change.kind]


def _known(change: Change) -> bool:
    """A kind this fleetctl knows (a manifest may list a kind an older one made)."""
    return change.kind in HOST_KINDS


def _stops(deletes: list[Change], drain: Drain | None = None) -> list[Step]:
    """The units that go, stopped and disabled before anything else changes (pollers at
    once, each draining)."""
    gone = [c for c in deletes if c.unit_action == "stop"]
    shared = [s for c in gone if not _poller(c) for s in UnitSpec.removal_steps(c.name)]
    pollers = [
        _draining(s, c, drain or Drain())
        for c in gone
        if _poller(c)
        for s in UnitSpec.removal_steps(c.name)
    ]
    return shared + _at_once(pollers)


def _poller(change: Change) -> bool:
    return layout.is_poller_unit(change.name)


# Directories fleetctl's layout makes as parents of what it writes (not in any manifest).
_OWN_ROOTS = (layout.FLEET_ETC, layout.NATS_CONF_DIR, layout.OPT_FLEET)


def _emptied_roots(deletes: list[Change]) -> list[str]:
    """The parents of removed files and dirs inside fleetctl's own roots, deepest first: they
    go if nothing else is in them."""
    found: set[str] = set()
    removed = {c.name for c in deletes if c.kind == DirSpec.kind}
    for c in deletes:
        path = _kind(c).removed_path(c.name) if _known(c) else None
        if path is None:
            continue
        for root in _OWN_ROOTS:
            parent = path.rsplit("/", 1)[0]
            while parent == root or parent.startswith(root + "/"):
                found.add(parent)
                parent = parent.rsplit("/", 1)[0]
    return sorted(found - removed, key=lambda d: (-d.count("/"), d))


def _removals(deletes: list[Change]) -> list[Step]:
    """Each kind's removal steps, kinds in the reverse of the order they are made in (files,
    packages, dirs, users): a user goes once nothing of it is left. Units are stopped first
    (`_stops`) and need no removal of their own."""
    gone = [c for c in deletes if _known(c) and c.kind != UnitSpec.kind]
    steps = []
    for c in sorted(gone, key=lambda c: -_kind(c).order):
        steps += _kind(c).removal_steps(c.name)
    return steps


def _touches_unit_files(changes: list[Change]) -> bool:
    return any(_known(c) and _kind(c).reloads_systemd(c.name) for c in changes)


def _start_order(change: Change) -> tuple[int, str]:
    """The tunnel and the broker before the pollers that need them."""
    return (0 if change.worker is None else 1, change.name)


def _write(label: str, path: str, content: bytes, mode: int) -> Step:
    return Step(label, FileSpec(path, content, mode=mode).write_op())


def _json(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def _manifest(
    plan: HostPlan, observed: ObservedHost, *, revision: str, applied_by: str, now: int
) -> dict[str, Any]:
    """What fleetctl owns here after this apply: the kept resources, plus what an earlier
    apply owned that this (perhaps --worker narrowed) plan neither keeps nor deletes."""
    owned = owned_after(plan, observed)
    units = {k: dict(v) for k, v in observed.unit_inputs.items() if f"unit {k}" in owned}
    units.update({k: dict(v) for k, v in plan.unit_inputs.items()})
    return {
        "format": MANIFEST_FORMAT,
        "revision": revision,
        "applied_at": now,
        "applied_by": applied_by,
        "resources": {k: None for k in sorted(owned)},
        "units": dict(sorted(units.items())),
    }


def owned_after(plan: HostPlan, observed: ObservedHost) -> set[str]:
    """The resource keys fleetctl owns on a host once its plan is applied (the manifest's)."""
    deleted = {f"{c.kind} {c.name}" for c in plan.changes if c.action == "delete"}
    return (set(observed.managed) - deleted) | set(plan.wanted)
