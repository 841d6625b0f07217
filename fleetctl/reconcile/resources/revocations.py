"""A departed worker's NATS credentials, to revoke."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RevocationSpec:
    """A departed worker's NATS user: revoked in the store and, through the broker's config,
    on the bus."""

    worker: str
    user: str

    @property
    def key(self) -> str:
        return f"credentials {self.user}"
