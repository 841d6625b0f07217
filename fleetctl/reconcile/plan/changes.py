"""Resources -> changes: creates and updates of what is kept, deletes of what is owned and
no longer wanted. Shared by the host diff and the bus diff; what a change says of a resource
comes from its kind (fleetctl/reconcile/resources/)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from fleetctl.reconcile.plan.types import Action, Change
from fleetctl.reconcile.resources.base import HostKind, Shown, UnitAction
from fleetctl.reconcile.resources.kinds import HOST_KINDS, Resource
from fleetctl.reconcile.resources.units import UnitSpec


def fingerprint(resource: Resource) -> dict[str, object]:
    """The attributes that, when they differ on the host, make a resource an update."""
    return resource.fingerprint()


def change(action: Action, resource: Resource, worker: str | None, before: bytes | None) -> Change:
    name, attrs = resource.describe()
    shown = resource.shown() if isinstance(resource, HostKind) else Shown()
    return Change(
        action,
        resource.kind,
        name,
        worker,
        attrs,
        before,
        shown.after,
        shown.sensitive,
        shown.sha256,
        resource,
        shown.unit_action,
        shown.generated,
    )


def diff(
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
            changes.append(change("create", resource, worker, None))
        elif dict(have) != resource.fingerprint():
            update = change("update", resource, worker, contents.get(resource.key))
            changes.append(_with_replicas(update, have, resource.fingerprint()))
        else:
            unchanged += 1
    return changes, unchanged, wanted


def _with_replicas(
    update: Change, have: Mapping[str, object], want: Mapping[str, object]
) -> Change:
    """A stream's change of copies is said in the plan: `replicas 1 -> 3`."""
    old, new = have.get("num_replicas"), want.get("num_replicas")
    if old == new or new is None:
        return update
    return replace(update, attrs=(*update.attrs, ("replicas", f"replicas {old} -> {new}")))


def orphans(keys: Iterable[str], contents: Mapping[str, bytes]) -> list[Change]:
    """Deletes of what fleetctl owns and no longer wants, known only by key; units are
    stopped and disabled."""
    out = []
    for key in sorted(keys):
        kind, _, name = key.partition(" ")
        unit = kind == UnitSpec.kind
        known = HOST_KINDS.get(kind)
        attrs = known.removal_attrs(name) if known is not None else ()
        unit_action: UnitAction | None = "stop" if unit else None
        out.append(
            Change("delete", kind, name, None, attrs, contents.get(key), unit_action=unit_action)
        )
    return out
