"""A departed worker's NATS credentials, to revoke: a bus kind the plan only ever deletes.
Apply revokes it in the local store (fleetctl/identity/credentials.py); the broker's config,
rendered from the store, already refuses the user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fleetctl.reconcile.resources.base import Attrs


@dataclass(frozen=True)
class RevocationSpec:
    """A departed worker's NATS user: revoked in the store and, through the broker's config,
    on the bus."""

    kind: ClassVar[str] = "credentials"

    worker: str
    user: str

    @property
    def key(self) -> str:
        return f"credentials {self.user}"

    def fingerprint(self) -> dict[str, object]:
        return {}

    def describe(self) -> tuple[str, Attrs]:
        return self.user, (("action", "revoke"),)
