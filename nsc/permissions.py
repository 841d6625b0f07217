"""User permissions as the JWT carries them: pub/sub allow/deny lists and response rights.

Generic on purpose: `fleetctl.identity.natsaccess` decides *what* each fleet user may do; this
module only knows the JWT shape (`pub`, `sub`, `resp: {max, ttl}` with ttl in nanoseconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_NS = 1_000_000_000


def _subjects(values: Iterable[str]) -> tuple[str, ...]:
    """Deduplicated, order kept; rejects what the Go library's Subject.Validate rejects."""
    out: list[str] = []
    for value in values:
        tokens = value.split(" ")
        if len(tokens) > 2 or any(
            not t or t.startswith(".") or t.endswith(".") or ".." in t for t in tokens
        ):
            raise ValueError(f"{value!r} is not a valid subject")
        if value not in out:
            out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class Permission:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @classmethod
    def of(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> Permission:
        return cls(_subjects(allow), _subjects(deny))

    def to_jwt(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if self.allow:
            out["allow"] = list(self.allow)
        if self.deny:
            out["deny"] = list(self.deny)
        return out

    @classmethod
    def from_jwt(cls, data: dict[str, Any] | None) -> Permission:
        data = data or {}
        return cls(tuple(data.get("allow") or ()), tuple(data.get("deny") or ()))


@dataclass(frozen=True)
class ResponsePermission:
    """May publish `max_msgs` replies to a received message's reply subject within `ttl`."""

    max_msgs: int = 1
    ttl_seconds: float = 60.0

    def to_jwt(self) -> dict[str, int]:
        return {"max": self.max_msgs, "ttl": int(self.ttl_seconds * _NS)}

    @classmethod
    def from_jwt(cls, data: dict[str, Any] | None) -> ResponsePermission | None:
        if data is None:
            return None
        return cls(int(data.get("max", 0)), int(data.get("ttl", 0)) / _NS)


@dataclass(frozen=True)
class Permissions:
    pub: Permission = field(default_factory=Permission)
    sub: Permission = field(default_factory=Permission)
    resp: ResponsePermission | None = None

    def to_jwt(self) -> dict[str, Any]:
        """The `pub`, `sub` (always present, as Go writes them) and optional `resp` fields."""
        out: dict[str, Any] = {"pub": self.pub.to_jwt(), "sub": self.sub.to_jwt()}
        if self.resp is not None:
            out["resp"] = self.resp.to_jwt()
        return out

    @classmethod
    def from_jwt(cls, nats: dict[str, Any]) -> Permissions:
        return cls(
            Permission.from_jwt(nats.get("pub")),
            Permission.from_jwt(nats.get("sub")),
            ResponsePermission.from_jwt(nats.get("resp")),
        )
