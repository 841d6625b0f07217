"""desired vs observed -> Plan: a pure, JSON-ready list of changes per host.

The offline plan (`--dry-run`) diffs against hosts about which nothing is known, so it lists
everything the fleet would put on each host; the live plan diffs against what was observed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from fleetctl.desired import (
    DirSpec,
    FileSpec,
    HostState,
    PackageSpec,
    Resource,
    UnitSpec,
    UserSpec,
)
from fleetctl.natsresources import ConsumerSpec, StreamSpec

Action = Literal["create", "update", "delete"]
SYMBOL: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}


@dataclass(frozen=True)
class ObservedHost:
    """What a host has of fleetctl's resources: fingerprint by resource key, what its
    manifest says fleetctl owns, and the inputs each unit was last (re)started with."""

    resources: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    contents: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    managed: frozenset[str] = frozenset()
    unit_inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    env_files: Mapping[str, str | None] = field(default_factory=dict)
    pending: tuple[str, ...] = ()  # units an interrupted apply still had to restart
    manifest_revision: str = ""
    corrupt_manifest: bool = False


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    name: str
    worker: str | None
    attrs: tuple[tuple[str, str], ...] = ()
    before: bytes | None = field(default=None, repr=False)
    after: bytes | None = field(default=None, repr=False)
    sensitive: bool = False
    sha256: str | None = None
    resource: Resource | None = field(default=None, repr=False, compare=False)

    @property
    def symbol(self) -> str:
        return SYMBOL[self.action]


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    roles: tuple[str, ...]
    changes: tuple[Change, ...]
    unchanged: int
    notes: tuple[str, ...] = ()
    error: str | None = None  # the host could not be observed: nothing is planned for it
    unit_inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    wanted: frozenset[str] = field(default=frozenset(), repr=False)  # keys kept by this plan


@dataclass(frozen=True)
class Summary:
    add: int
    change: int
    destroy: int

    @property
    def empty(self) -> bool:
        return not (self.add or self.change or self.destroy)


@dataclass(frozen=True)
class Plan:
    mode: Literal["offline", "live"]
    revision: str
    hosts: tuple[HostPlan, ...]
    warnings: tuple[str, ...] = ()

    @property
    def summary(self) -> Summary:
        changes = [c for h in self.hosts for c in h.changes]
        return Summary(
            add=sum(c.action == "create" for c in changes),
            change=sum(c.action == "update" for c in changes),
            destroy=sum(c.action == "delete" for c in changes),
        )


def fingerprint(resource: Resource) -> dict[str, object]:
    """The attributes that, when they differ on the host, make a resource an update."""
    match resource:
        case FileSpec():
            return {
                "sha256": resource.sha256,
                "mode": resource.mode,
                "owner": resource.owner,
                "group": resource.group,
            }
        case DirSpec():
            return {"mode": resource.mode, "owner": resource.owner, "group": resource.group}
        case UserSpec():
            return {"home": resource.home}
        case UnitSpec():
            return {"enabled": resource.enabled, "active": resource.enabled}
        case PackageSpec():
            return {"version": resource.version}
        case StreamSpec() | ConsumerSpec():
            return resource.api_config()


def describe(resource: Resource) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(kind, name, attributes to show) for one resource."""
    match resource:
        case FileSpec():
            return (
                "file",
                resource.path,
                (
                    ("mode", f"{resource.mode:04o}"),
                    ("owner", f"{resource.owner}:{resource.group}"),
                    ("size", human_size(len(resource.content))),
                ),
            )
        case DirSpec():
            return (
                "dir",
                resource.path,
                (("mode", f"{resource.mode:04o}"), ("owner", f"{resource.owner}:{resource.group}")),
            )
        case UserSpec():
            return "user", resource.name, (("home", resource.home),)
        case UnitSpec():
            state = "enable, start" if resource.enabled else "disable, stop"
            return "unit", resource.name, (("state", state),)
        case PackageSpec():
            return "package", resource.name, (("version", resource.version),)
        case StreamSpec():
            return (
                "stream",
                resource.name,
                (("subjects", " ".join(resource.subjects)), ("retention", resource.retention)),
            )
        case ConsumerSpec():
            return (
                "consumer",
                f"{resource.stream}/{resource.durable}",
                (("filter", resource.filter_subject), ("ack_wait", f"{resource.ack_wait}s")),
            )


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.1f} MiB"


def _change(action: Action, resource: Resource, worker: str | None, before: bytes | None) -> Change:
    kind, name, attrs = describe(resource)
    if isinstance(resource, FileSpec):
        return Change(
            action,
            kind,
            name,
            worker,
            attrs,
            before,
            resource.content,
            resource.sensitive,
            resource.sha256,
            resource,
        )
    return Change(action, kind, name, worker, attrs, before, resource=resource)


def diff_host(
    state: HostState,
    observed: ObservedHost,
    keep: Iterable[tuple[Resource, str | None]],
    selection: Selection,
    *,
    live: bool = False,
) -> HostPlan:
    changes: list[Change] = []
    unchanged = 0
    wanted: set[str] = set()
    kept = list(keep)
    for resource, worker in kept:
        wanted.add(resource.key)
        have = observed.resources.get(resource.key)
        if have is None:
            changes.append(_change("create", resource, worker, None))
        elif dict(have) != fingerprint(resource):
            before = observed.contents.get(resource.key)
            changes.append(_change("update", resource, worker, before))
        else:
            unchanged += 1
    inputs: dict[str, dict[str, str]] = {}
    if live:
        changes, unchanged, inputs = _restarts(state, observed, kept, changes, unchanged)
    for key in sorted(observed.managed - wanted):
        if not selection.owns_orphan(key, state.host.name):
            continue
        kind, _, name = key.partition(" ")
        attrs = (("state", "stop, disable"),) if kind == "unit" else ()
        changes.append(Change("delete", kind, name, None, attrs, observed.contents.get(key)))
    notes = tuple(
        f"worker {w} is disabled: not deployed"
        for w in state.disabled_workers
        if selection.keeps_note(w)
    )
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


def unit_inputs(state: HostState, unit: UnitSpec, observed: ObservedHost) -> dict[str, str]:
    """What a unit runs with: the hash of each file it reads, each package's version."""
    files = {f.path: f.sha256 for f in state.files}
    packages = {f"package {p.name}": p.version for p in state.packages}
    out = {}
    for trigger in (*unit.restart_on, *unit.reload_on):
        value = packages.get(trigger) or files.get(trigger) or observed.env_files.get(trigger)
        out[trigger] = value or "absent"
    return out


def _restarts(
    state: HostState,
    observed: ObservedHost,
    kept: list[tuple[Resource, str | None]],
    changes: list[Change],
    unchanged: int,
) -> tuple[list[Change], int, dict[str, dict[str, str]]]:
    """Running units whose inputs changed since they were last started: restart or reload.
    Units that are being created or started anyway pick up the new inputs by themselves."""
    touched = {c.name for c in changes if c.kind == "unit"}
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
                "unit",
                resource.name,
                worker,
                (("action", f"{action}: {reason}"),),
                resource=resource,
            )
        )
    return out, unchanged, inputs


def _trigger_name(trigger: str) -> str:
    if trigger.startswith("package "):
        return trigger
    return trigger.rsplit("/", 1)[-1]


def _with_revocations(plan: HostPlan, revoke: tuple[tuple[str, str], ...]) -> HostPlan:
    """Credentials of workers no longer in the fleet: revoked in the nsc store and, through
    the broker config, on the broker (which is why they show on the broker host)."""
    revocations = tuple(
        Change("delete", "credentials", user, worker, (("action", "revoke"),))
        for worker, user in revoke
    )
    return replace(plan, changes=(*plan.changes, *revocations))


@dataclass(frozen=True)
class Selection:
    """What --host and --worker narrow the plan to (empty: everything)."""

    hosts: frozenset[str] = frozenset()
    workers: frozenset[str] = frozenset()
    worker_hosts: frozenset[str] = frozenset()  # where the selected enabled workers run
    homes: frozenset[str] = frozenset()  # where the selected workers are placed, enabled or not

    def includes_host(self, name: str, state: HostState) -> bool:
        if self.hosts and name not in self.hosts:
            return False
        if not self.workers:
            return True
        return name in self.homes or any(w in self.workers for _, w in state.resources())

    def keeps(self, host: str, worker: str | None) -> bool:
        """A worker's own resources, and what its host shares with it (the tunnel)."""
        if not self.workers:
            return True
        return worker in self.workers or (worker is None and host in self.worker_hosts)

    def keeps_note(self, note_worker: str) -> bool:
        return not self.workers or note_worker in self.workers

    def owns_orphan(self, key: str, host: str) -> bool:
        """Orphans (owned by fleetctl, no longer wanted) go only with a whole-host selection:
        `--worker` cannot tell which worker an orphan belonged to, so it leaves them alone."""
        return not self.workers


def make_plan(
    desired: Mapping[str, HostState],
    observed: Mapping[str, ObservedHost] | None = None,
    *,
    selection: Selection = Selection(),
    revision: str = "",
    warnings: tuple[str, ...] = (),
    errors: Mapping[str, str] | None = None,
    revoke: tuple[tuple[str, str], ...] = (),
) -> Plan:
    """Diff every selected host; `observed=None` is the offline plan (nothing known)."""
    plans = []
    errors = errors or {}
    for name, state in desired.items():
        if not selection.includes_host(name, state):
            continue
        if name in errors:
            host = state.host
            roles = tuple(sorted(host.roles))
            plans.append(HostPlan(name, host.address, roles, (), 0, error=errors[name]))
            continue
        keep = [(r, w) for r, w in state.resources() if selection.keeps(name, w)]
        seen = (observed or {}).get(name, ObservedHost())
        host_plan = diff_host(state, seen, keep, selection, live=observed is not None)
        if state.host.is_broker and revoke and not selection.workers:
            host_plan = _with_revocations(host_plan, revoke)
        plans.append(host_plan)
    return Plan("offline" if observed is None else "live", revision, tuple(plans), warnings)
