"""Resources -> changes: creates and updates of what is kept, deletes of what is owned and
no longer wanted. Shared by the host diff and the bus diff."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fleetctl.bus.resources import ConsumerSpec, StreamSpec
from fleetctl.reconcile.plan.types import Action, Change, UnitAction
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec, human_size
from fleetctl.reconcile.resources.kinds import Resource
from fleetctl.reconcile.resources.packages import PackageSpec
from fleetctl.reconcile.resources.revocations import RevocationSpec
from fleetctl.reconcile.resources.units import UnitSpec
from fleetctl.reconcile.resources.users import UserSpec


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


def change(action: Action, resource: Resource, worker: str | None, before: bytes | None) -> Change:
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
        elif dict(have) != fingerprint(resource):
            changes.append(change("update", resource, worker, contents.get(resource.key)))
        else:
            unchanged += 1
    return changes, unchanged, wanted


def orphans(keys: Iterable[str], contents: Mapping[str, bytes]) -> list[Change]:
    """Deletes of what fleetctl owns and no longer wants, known only by key; units are
    stopped and disabled."""
    out = []
    for key in sorted(keys):
        kind, _, name = key.partition(" ")
        attrs = (("state", "stop, disable"),) if kind == "unit" else ()
        unit_action: UnitAction | None = "stop" if kind == "unit" else None
        out.append(
            Change("delete", kind, name, None, attrs, contents.get(key), unit_action=unit_action)
        )
    return out
