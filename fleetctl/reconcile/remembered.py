"""The hosts fleetctl has applied to from this machine, and where they were.

servers.yaml says which hosts the fleet has; this says which hosts have fleetctl's things on
them, so a host that left servers.yaml is not abandoned: the plan warns about it and
`fleetctl decommission` can still reach it (its address, port, user, and the SSH key it
presented, which servers.yaml no longer pins). One JSON file per operator beside the
credential store (`<stores>/fleetctl-hosts.<operator>.json`, 0600), rewritten atomically
under the store's lock by `apply` after each host it applied.

A store, nothing more: what to remember of an applied host is the apply use case's
(fleetctl/reconcile/apply.py), so this module imports nothing of the pipeline above it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fleetctl.config.errors import Mark
from fleetctl.config.model import Fleet, Host
from fleetctl.errors import LocalFileError
from fleetctl.identity import credentials
from nsc.fsutil import SECRET_MODE, atomic_write, locked

FORMAT = 1
_FIX = (
    "move it aside: fleetctl then forgets the hosts it applied to (the next `apply --all` "
    "remembers the fleet's hosts again, but not hosts that already left servers.yaml)"
)


@dataclass(frozen=True)
class RememberedHost:
    name: str
    address: str
    port: int
    user: str
    roles: tuple[str, ...]
    host_key: str | None  # the SSH key it presented at its last apply (None: not over SSH)
    applied_at: int  # seconds since the epoch
    revision: str
    resources: tuple[str, ...]  # what its manifest lists after that apply ("unit x.service")

    def host(self, origin: Path) -> Host:
        """A Host to connect to, its key pinned to the one it presented last time."""
        return Host(
            self.name,
            self.address,
            self.user,
            self.port,
            frozenset(self.roles),
            self.host_key,
            {},
            Mark(str(origin), 1, 1),
        )

    @property
    def applied(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.applied_at))


def path(fleet: Fleet) -> Path:
    return credentials.dirs_for(fleet).stores / f"fleetctl-hosts.{fleet.creds.operator}.json"


def load(fleet: Fleet) -> dict[str, RememberedHost]:
    """Every remembered host by name; none before the first apply."""
    file = path(fleet)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise LocalFileError(file, "is not UTF-8 text", _FIX) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        what = f"is not valid JSON: {exc.msg.lower()} at {where}"
        raise LocalFileError(file, what, _FIX) from None
    return _parse(file, data)


def _parse(file: Path, data: Any) -> dict[str, RememberedHost]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        what = f"is not a format {FORMAT} list of the hosts fleetctl applied to"
        raise LocalFileError(file, what, _FIX)
    hosts = data.get("hosts")
    if not isinstance(hosts, dict):
        raise LocalFileError(file, "has no `hosts` object", _FIX)
    found = {}
    for name, entry in hosts.items():
        try:
            found[name] = RememberedHost(
                name=str(name),
                address=_typed(entry, "address", str),
                port=_typed(entry, "port", int),
                user=_typed(entry, "user", str),
                roles=tuple(_typed(entry, "roles", list)),
                host_key=entry.get("host_key") if isinstance(entry.get("host_key"), str) else None,
                applied_at=_typed(entry, "applied_at", int),
                revision=str(entry.get("revision") or ""),
                resources=tuple(str(r) for r in _typed(entry, "resources", list)),
            )
        except (TypeError, AttributeError, KeyError) as exc:
            raise LocalFileError(file, f"host {name!r}: {exc}", _FIX) from None
    return found


def _typed(entry: Mapping[str, Any], key: str, kind: type) -> Any:
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"`{key}` is not a {kind.__name__}")
    return value


def remember(fleet: Fleet, hosts: Iterable[RememberedHost]) -> None:
    """Record `hosts`; another name remembered for the same machine (a host renamed in
    servers.yaml) is dropped, so it never shows as a host that left."""
    fresh = list(hosts)

    def change(known: dict[str, RememberedHost]) -> None:
        for h in fresh:
            for other in [o for o in known.values() if o.name != h.name and same_machine(o, h)]:
                del known[other.name]
            known[h.name] = h

    _update(fleet, change)


def same_machine(a: RememberedHost, b: RememberedHost) -> bool:
    """The same address and port, or the same SSH host key."""
    return (a.address, a.port) == (b.address, b.port) or (
        a.host_key is not None and key_of(a.host_key) == key_of(b.host_key)
    )


def key_of(line: str | None) -> tuple[str, ...]:
    """An SSH key line's type and key, without its comment."""
    return tuple((line or "").split()[:2])


def forget(fleet: Fleet, name: str) -> None:
    _update(fleet, lambda known: known.pop(name, None))


def _update(fleet: Fleet, change: Callable[[dict[str, RememberedHost]], object]) -> None:
    """Read, change and write under the store's lock: parallel hosts and two fleetctl runs
    each keep their change."""
    file = path(fleet)
    with locked(file.parent):
        known = load(fleet)
        change(known)
        entries = {n: {k: v for k, v in asdict(h).items() if k != "name"} for n, h in known.items()}
        text = json.dumps({"format": FORMAT, "hosts": dict(sorted(entries.items()))}, indent=1)
        atomic_write(file, text + "\n", SECRET_MODE, durable=True)
