"""The previous versions a host keeps (fleetctl/hostside/previous.py), as its agent reports
them, and what going back to the newest would change, as plan changes (`fleetctl rollback`
shows them like any plan). Pure."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetctl import layout
from fleetctl.reconcile.plan.types import Action, Change
from fleetctl.reconcile.resources.base import UnitAction

VENV_PREFIX = layout.POLLER_VENV.rsplit("/", 1)[-1] + "-"  # venv-<version>


@dataclass(frozen=True)
class KeptVersion:
    """One generation: what a program replaced, to be put back. `state`: `armed` (waiting
    for apply's confirmation; the host restores it by itself when none comes) or
    `confirmed`."""

    generation: str
    state: str
    revision: str | None = None
    applied_at: int | None = None
    applied_by: str | None = None
    entries: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    owners: Mapping[str, str] = field(default_factory=dict, repr=False)

    def described(self) -> str:
        """`applied 2026-03-01 14:03 UTC by fleetctl apply --all (revision ab12cd34ef56)`."""
        when = (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.applied_at))
            if self.applied_at
            else "at an unknown time"
        )
        by = f" by {self.applied_by}" if self.applied_by else ""
        rev = f" (revision {self.revision[:12]})" if self.revision else ""
        return f"applied {when}{by}{rev}"


@dataclass(frozen=True)
class Kept:
    """A host's kept versions, oldest first, and its own last rollback when it made one
    (the watchdog: no apply confirmed that version in time)."""

    versions: tuple[KeptVersion, ...] = ()
    rolled_back: Mapping[str, Any] | None = None

    @property
    def newest(self) -> KeptVersion | None:
        return self.versions[-1] if self.versions else None

    @property
    def unconfirmed(self) -> KeptVersion | None:
        """The newest version, while the host still waits for its confirmation."""
        newest = self.newest
        return newest if newest is not None and newest.state == "armed" else None


def parse_kept(raw: object) -> Kept:
    """The agent's `previous` (the host's previous.json); anything unreadable keeps nothing."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("generations"), list):
        return Kept()
    versions = []
    for g in raw["generations"]:
        if not isinstance(g, Mapping) or not isinstance(g.get("id"), str):
            continue
        entries = tuple(e for e in g.get("entries") or () if isinstance(e, Mapping))
        versions.append(
            KeptVersion(
                generation=g["id"],
                state=str(g.get("state") or "confirmed"),
                revision=_text(g.get("revision")),
                applied_at=g.get("applied_at") if isinstance(g.get("applied_at"), int) else None,
                applied_by=_text(g.get("applied_by")),
                entries=entries,
                owners={str(k): str(v) for k, v in (g.get("owners") or {}).items()},
            )
        )
    gone = raw.get("rolled_back")
    return Kept(tuple(versions), gone if isinstance(gone, Mapping) else None)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def key_of(entry: Mapping[str, Any]) -> str:
    """The entry's key as the version's `owners` name it (hostside/previous.py `_key`)."""
    if "unit" in entry:
        return f"unit {entry['unit']}"
    if "user" in entry:
        return f"user {entry['user']}"
    return f"path {entry.get('path')}"


def going_back(version: KeptVersion, workers: Sequence[str] | None = None) -> tuple[Change, ...]:
    """What restoring `version` changes on the host (only `workers`' part when given)."""
    chosen = [
        e for e in version.entries if workers is None or version.owners.get(key_of(e)) in workers
    ]
    out = [_change(e, version.owners.get(key_of(e))) for e in chosen]
    return tuple(c for c in out if c is not None)


def _change(entry: Mapping[str, Any], worker: str | None) -> Change | None:
    if "unit" in entry:
        return _unit(entry, worker)
    if "user" in entry:
        home = entry.get("home")
        if home is None:
            return Change("delete", "user", str(entry["user"]), worker, (("state", "remove"),))
        return Change("update", "user", str(entry["user"]), worker, (("home", str(home)),))
    path, was = str(entry.get("path")), entry.get("was")
    if was == "link" and path == layout.POLLER_VENV:
        version = str(entry.get("target", "")).rsplit("/", 1)[-1].removeprefix(VENV_PREFIX)
        return Change(
            "update", "package", "fleet-poller", worker, (("version", _version(version)),)
        )
    shown: dict[str, tuple[Action, str, tuple[tuple[str, str], ...]]] = {
        "file": ("update", "file", (("content", "as before"),)),
        "link": ("update", "file", (("link to", str(entry.get("target"))),)),
        "dir": ("create", "dir", (("content", "as before"),)),
        "meta": ("update", "dir", (("mode", f"{int(entry.get('mode', 0)):04o}"),)),
    }
    if was == "absent":
        kind = "dir" if entry.get("dir") else "file"
        return Change("delete", kind, path, worker, (("state", "did not exist"),))
    if was not in shown:
        return None
    action, kind, attrs = shown[str(was)]
    return Change(action, kind, path, worker, attrs)


def _version(venv: str) -> str:
    """A venv directory's version back as the plan writes it (`0.1.0_abc` -> `0.1.0+abc`)."""
    return venv.replace("_", "+", 1) if "_" in venv else venv


def _unit(entry: Mapping[str, Any], worker: str | None) -> Change:
    name = str(entry["unit"])
    if not entry.get("active"):
        return Change(
            "delete", "unit", name, worker, (("state", "stop, disable"),), unit_action="stop"
        )
    actions = list(entry.get("actions") or ())
    action: UnitAction = "reload" if actions == ["reload"] else "restart"
    if actions and set(actions) <= {"disable", "stop"}:
        return Change("create", "unit", name, worker, (("state", "start"),), unit_action="start")
    return Change("update", "unit", name, worker, (("action", action),), unit_action=action)
