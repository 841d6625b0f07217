"""What a plan is: changes, per host and for the bus, and the summary people read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from fleetctl.reconcile.departed import DepartedHost
from fleetctl.reconcile.resources.base import UnitAction
from fleetctl.reconcile.resources.kinds import Resource

Action = Literal["create", "update", "delete"]
SYMBOL: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}


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
    reached through (and shown with): the first of its `homes` (the broker hosts) that
    answered."""

    via: str
    changes: tuple[Change, ...]
    unchanged: int
    error: str | None = None  # why the bus could not be observed: nothing is planned for it
    homes: tuple[str, ...] = ()  # every host the bus lives on (BusState.homes)
    meta_leader: str | None = None  # a cluster's JetStream meta leader when observed


@dataclass(frozen=True)
class Schedule:
    """The order apply changes hosts in (fleetctl/reconcile/plan/schedule.py): the bus's
    hosts first, on their own; then the worker hosts that have changes, batch by batch; the
    rollout stops once more than `max_failed` of them failed. `batch` is the batch size as
    asked (`2`, `25%`; None: all at once)."""

    first: tuple[str, ...]
    batches: tuple[tuple[str, ...], ...]
    batch: str | None = None
    max_failed: int = 0
    pause: int = 0


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
    schedule: Schedule | None = None  # how apply rolls it out (None: not worked out)

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
