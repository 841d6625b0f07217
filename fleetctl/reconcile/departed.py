"""Hosts that left servers.yaml with fleetctl's things still on them. Pure.

A host fleetctl applied to (fleetctl/reconcile/remembered.py) and that servers.yaml no longer lists
keeps running what it was given: pollers, a tunnel reconnecting to the broker, users, creds
files. The plan shows each such host with what is still there, read from its manifest
(live plan) or as last applied (offline plan, or the host could not be reached), until
`fleetctl decommission` removes it all or `--forget` drops it from memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from fleetctl.config.model import Fleet
from fleetctl.reconcile.remembered import RememberedHost, key_of

Source = Literal["manifest", "last apply"]


@dataclass(frozen=True)
class DepartedHost:
    name: str
    address: str
    roles: tuple[str, ...]
    applied: str  # when fleetctl last applied to it, for people
    resources: tuple[str, ...]  # what fleetctl owns there ("unit x.service"), sorted
    source: Source  # where `resources` comes from
    error: str | None = None  # why it could not be read (live plans)

    @property
    def pending(self) -> bool:
        """Something fleetctl put there is still there (or was, when last seen)."""
        return bool(self.resources)


def departed(fleet: Fleet, known: Mapping[str, RememberedHost]) -> list[RememberedHost]:
    """The remembered hosts servers.yaml no longer lists, by name; not a host that is only
    listed under another name now (renamed: the same machine)."""
    listed = {h.name for h in fleet.hosts}
    return [
        known[n]
        for n in sorted(known)
        if n not in listed and listed_as(fleet, known, known[n]) is None
    ]


def listed_as(
    fleet: Fleet, known: Mapping[str, RememberedHost], entry: RememberedHost
) -> str | None:
    """The servers.yaml host that is the machine `entry` names, if one is: the same address
    and port, or the same SSH host key (pinned there, or remembered for it)."""
    for host in fleet.hosts:
        if host.name == entry.name:
            return host.name
        seen = known.get(host.name)
        keys = {key_of(host.host_key), key_of(seen.host_key if seen else None)}
        if (host.address, host.port) == (entry.address, entry.port) or (
            entry.host_key is not None and key_of(entry.host_key) in keys
        ):
            return host.name
    return None


def offline(fleet: Fleet, known: Mapping[str, RememberedHost]) -> tuple[DepartedHost, ...]:
    """The offline plan's view: each departed host as fleetctl last applied it."""
    return tuple(as_last_applied(e) for e in departed(fleet, known))


def as_last_applied(host: RememberedHost, error: str | None = None) -> DepartedHost:
    return DepartedHost(
        host.name,
        host.address,
        host.roles,
        host.applied,
        tuple(sorted(host.resources)),
        "last apply",
        error,
    )


def as_observed(host: RememberedHost, there: Iterable[str]) -> DepartedHost:
    return DepartedHost(
        host.name, host.address, host.roles, host.applied, tuple(sorted(there)), "manifest"
    )


def what_is_there(resources: Iterable[str]) -> str:
    """`units a, b; users c; 6 files; 3 dirs; package fleet-poller`: names of the few
    things people look for, counts of the many."""
    by_kind: dict[str, list[str]] = {}
    for key in resources:
        kind, _, name = key.partition(" ")
        by_kind.setdefault(kind, []).append(name)
    parts = []
    for kind in ("unit", "user", "package"):
        names = sorted(by_kind.pop(kind, []))
        if names:
            label = kind if len(names) == 1 else f"{kind}s"
            parts.append(f"{label} {', '.join(repr(n) if _odd(n) else n for n in names)}")
    for kind in sorted(by_kind):
        n = len(by_kind[kind])
        parts.append(f"{n} {kind}{'' if n == 1 else 's'}")
    return "; ".join(parts)


def _odd(name: str) -> bool:
    """A name a host's manifest holds that would not print as itself."""
    return not name.isprintable() or not name or " " in name
