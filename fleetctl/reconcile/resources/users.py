"""A system user fleetctl makes on a host (a worker's, nats-server's, the tunnel's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fleetctl.reconcile.resources.base import Attrs, HostKind, Staged, Step


@dataclass(frozen=True)
class UserSpec(HostKind):
    kind: ClassVar[str] = "user"
    order: ClassVar[int] = 1

    name: str
    home: str
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"user {self.name}"

    def fingerprint(self) -> dict[str, object]:
        return {"home": self.home}

    def describe(self) -> tuple[str, Attrs]:
        return self.name, (("home", self.home),)

    @classmethod
    def ask(cls, wanted: Sequence[UserSpec], *, with_contents: bool) -> dict[str, Any]:
        return cls.recall([r.name for r in wanted])

    @classmethod
    def recall(cls, names: Sequence[str]) -> dict[str, Any]:
        return {"users": list(names)}

    @classmethod
    def read(cls, answer: Mapping[str, Any]) -> dict[str, dict[str, object]]:
        return {
            f"user {name}": {"home": user["home"]}
            for name, user in (answer.get("users") or {}).items()
            if user is not None
        }

    def steps(self, staged: Staged) -> list[Step]:
        return [Step(f"user {self.name}", {"op": "user", "name": self.name, "home": self.home})]

    @classmethod
    def removal_steps(cls, name: str) -> list[Step]:
        return [Step(f"remove user {name}", {"op": "remove_user", "name": name})]
