"""A system user fleetctl makes on a host (a worker's, nats-server's, the tunnel's)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserSpec:
    name: str
    home: str
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"user {self.name}"
