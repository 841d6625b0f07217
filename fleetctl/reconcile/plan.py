"""desired vs observed -> Plan: a pure, JSON-ready list of changes per host, and the bus's.

The offline plan (`--dry-run`) diffs against hosts about which nothing is known, so it lists
everything the fleet would put on each host and the bus; the live plan diffs against what
was observed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from fleetctl.bus.resources import ConsumerSpec, StreamSpec
from fleetctl.config.model import Host
from fleetctl.layout import NATS_UNIT
from fleetctl.reconcile.departed import DepartedHost
from fleetctl.reconcile.desired import (
    BusResource,
    BusState,
    DirSpec,
    FileSpec,
    FleetState,
    HostResource,
    HostState,
    PackageSpec,
    RevocationSpec,
    UnitSpec,
    UserSpec,
)
from fleetctl.reconcile.facts import ObservedBus, ObservedHost

Action = Literal["create", "update", "delete"]
# What systemctl does to a unit: start (enable --now), restart, reload, stop (disable --now).
UnitAction = Literal["start", "restart", "reload", "stop"]
SYMBOL: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}
Resource = HostResource | BusResource


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    name: str
    worker: str | None
    attrs: tuple[tuple[str, str], ...] = ()  # for people: the text and JSON plan show them
    before: bytes | None = field(default=None, repr=False)
    after: bytes | None = field(default=None, repr=False)
    sensitive: bool = False
    sha256: str | None = None
    resource: Resource | None = field(default=None, repr=False, compare=False)
    unit_action: UnitAction | None = None  # units only: what apply has systemctl do
    generated: bool = False  # a file whose content apply generates (a new tunnel key)

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
class BusPlan:
    """The bus's changes: streams, consumers, credentials to revoke. `via` is the host it is
    reached through (and shown with): the broker today, one of several brokers later."""

    via: str
    changes: tuple[Change, ...]
    unchanged: int
    error: str | None = None  # why the bus could not be observed: nothing is planned for it


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
    bus: BusPlan | None = None  # None: the selection leaves the bus out
    departed: tuple[DepartedHost, ...] = ()  # hosts that left servers.yaml (fleetctl/departed)

    @property
    def pending(self) -> bool:
        """Changes to apply, or a host that left servers.yaml with fleetctl's things on it
        (`--detailed-exitcode` exits 2 for either)."""
        return not self.summary.empty or any(d.pending for d in self.departed)

    @property
    def changes(self) -> list[Change]:
        bus = self.bus.changes if self.bus else ()
        return [*(c for h in self.hosts for c in h.changes), *bus]

    @property
    def summary(self) -> Summary:
        changes = self.changes
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
        case RevocationSpec():
            return {}


def describe(resource: Resource) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(kind, name, attributes to show) for one resource."""
    match resource:
        case FileSpec():
            size = () if resource.generated else (("size", human_size(len(resource.content))),)
            return (
                "file",
                resource.path,
                (
                    ("mode", f"{resource.mode:04o}"),
                    ("owner", f"{resource.owner}:{resource.group}"),
                    *size,
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
        case RevocationSpec():
            return "credentials", resource.user, (("action", "revoke"),)
        case PackageSpec():
            return "package", resource.name, (("version", resource.version),)
        case StreamSpec():
            many = len(resource.subjects) > 2  # the task stream: one inbox per worker
            subjects = f"{len(resource.subjects)} subjects" if many else " ".join(resource.subjects)
            return (
                "stream",
                resource.name,
                (("subjects", subjects), ("retention", resource.retention)),
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
            None if resource.generated else resource.sha256,
            resource,
            generated=resource.generated,
        )
    unit_action: UnitAction | None = None
    if isinstance(resource, UnitSpec):
        unit_action = "start" if resource.enabled else "stop"
    return Change(
        action, kind, name, worker, attrs, before, resource=resource, unit_action=unit_action
    )


def _diff(
    kept: Iterable[tuple[Resource, str | None]],
    resources: Mapping[str, Mapping[str, object]],
    contents: Mapping[str, bytes],
) -> tuple[list[Change], int, set[str]]:
    """Creates and updates of what is kept, the number already as desired, the keys kept."""
    changes: list[Change] = []
    unchanged = 0
    wanted: set[str] = set()
    for resource, worker in kept:
        wanted.add(resource.key)
        have = resources.get(resource.key)
        if have is None:
            changes.append(_change("create", resource, worker, None))
        elif dict(have) != fingerprint(resource):
            changes.append(_change("update", resource, worker, contents.get(resource.key)))
        else:
            unchanged += 1
    return changes, unchanged, wanted


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
    changes, unchanged, wanted = _diff(kept, observed.resources, observed.contents)
    changes = [_say_why_dead(c, observed.dead_units) for c in changes]
    wanted |= {f"file {path}" for path in state.unknown_files}
    inputs: dict[str, dict[str, str]] = {}
    if live:
        changes, unchanged, inputs = _restarts(state, observed, kept, changes, unchanged)
    if selection.owns_orphans():
        changes += _orphans(observed.managed - wanted, observed.contents)
    notes = tuple(
        f"worker {w} is disabled: not deployed"
        for w in state.disabled_workers
        if selection.keeps_note(w)
    )
    if live:
        notes += runtime_problems(state, observed)
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
    if change.kind != "unit" or change.action != "update" or change.name not in dead:
        return change
    return replace(change, attrs=(("state", f"start ({dead[change.name]})"),))


def _orphans(keys: Iterable[str], contents: Mapping[str, bytes]) -> list[Change]:
    out = []
    for key in sorted(keys):
        kind, _, name = key.partition(" ")
        attrs = (("state", "stop, disable"),) if kind == "unit" else ()
        unit_action: UnitAction | None = "stop" if kind == "unit" else None
        out.append(
            Change("delete", kind, name, None, attrs, contents.get(key), unit_action=unit_action)
        )
    return out


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
    changes, unchanged, wanted = _diff(kept, observed.resources, {})
    if selection.owns_orphans():
        changes += [
            _left_behind(c, observed.queued) for c in _orphans(observed.managed - wanted, {})
        ]
        changes += [_change("delete", r, r.worker, None) for r in bus.revocations]
    return BusPlan(via.name, tuple(changes), unchanged)


def _left_behind(change: Change, queued: Mapping[str, int]) -> Change:
    """A departing worker's consumer with tasks still queued: the plan says how many, and
    that no worker will run them (they stay in the task stream until its max_age)."""
    n = queued.get(f"{change.kind} {change.name}", 0)
    if change.kind != "consumer" or not n:
        return change
    note = f"{n} queued task{'s' if n != 1 else ''} left unrun (kept until max_age)"
    return replace(change, attrs=(*change.attrs, ("queued", note)))


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
                "unit",
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

    def includes_bus(self, homes: Iterable[str]) -> bool:
        """`--host` keeps the bus only when it names a host the bus lives on."""
        return not self.hosts or any(h in self.hosts for h in homes)

    def owns_orphans(self) -> bool:
        """Orphans (owned by fleetctl, no longer wanted) go only with a whole-host selection:
        `--worker` cannot tell which worker an orphan belonged to, so it leaves them alone.
        Revocations follow the same rule: they are the bus's orphans."""
        return not self.workers


def planned_hosts(desired: FleetState, selection: Selection) -> list[str]:
    """The hosts a plan covers, in servers.yaml order: the selected ones, and the host the
    bus is reached through whenever the bus is part of the plan."""
    bus = desired.bus
    via = bus.homes[0] if bus.homes else None
    with_bus = via is not None and (
        diff_bus(bus, ObservedBus(), selection, desired.hosts[via].host) is not None
    )
    return [
        name
        for name, state in desired.hosts.items()
        if selection.includes_host(name, state) or (with_bus and name == via)
    ]


def make_plan(
    desired: FleetState,
    observed: Mapping[str, ObservedHost] | None = None,
    *,
    bus: ObservedBus | None = None,
    selection: Selection = Selection(),
    revision: str = "",
    warnings: tuple[str, ...] = (),
    errors: Mapping[str, str] | None = None,
) -> Plan:
    """Diff every planned host and the bus; `observed=None` is the offline plan (nothing
    known). The bus is diffed against `bus`, or against nothing when it was not observed;
    it is not planned when the host it is reached through could not be observed."""
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
    homes = desired.bus.homes
    if homes and homes[0] in names and homes[0] not in errors:
        via = desired.hosts[homes[0]].host
        on_bus = bus or ObservedBus()
        bus_plan = diff_bus(desired.bus, on_bus, selection, via)
        installed = (observed or {}).get(via.name, ObservedHost()).resources
        if bus_plan is not None and not on_bus.reachable and f"unit {NATS_UNIT}" in installed:
            # nats-server is installed but does not answer: what the bus holds is unknown.
            why = f"{NATS_UNIT} is installed on {via.name} but {on_bus.error or 'does not answer'}"
            bus_plan = BusPlan(via.name, (), 0, error=why)
    mode: Literal["offline", "live"] = "offline" if observed is None else "live"
    return Plan(mode, revision, tuple(plans), warnings, bus_plan)
