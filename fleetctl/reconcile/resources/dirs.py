"""A directory fleetctl makes on a host, with its owner and mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fleetctl.reconcile.resources.base import Attrs, HostKind, Staged, Step


@dataclass(frozen=True)
class DirSpec(HostKind):
    kind: ClassVar[str] = "dir"
    order: ClassVar[int] = 2

    path: str
    owner: str
    group: str
    mode: int = 0o750
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"dir {self.path}"

    def fingerprint(self) -> dict[str, object]:
        return {"mode": self.mode, "owner": self.owner, "group": self.group}

    def describe(self) -> tuple[str, Attrs]:
        return self.path, (("mode", f"{self.mode:04o}"), ("owner", f"{self.owner}:{self.group}"))

    @classmethod
    def ask(cls, wanted: Sequence[DirSpec], *, with_contents: bool) -> dict[str, Any]:
        return cls.recall([r.path for r in wanted])

    @classmethod
    def recall(cls, names: Sequence[str]) -> dict[str, Any]:
        return {"dirs": list(names)}

    @classmethod
    def read(cls, answer: Mapping[str, Any]) -> dict[str, dict[str, object]]:
        return {
            f"dir {path}": {"mode": st["mode"], "owner": st["owner"], "group": st["group"]}
            for path, st in (answer.get("dirs") or {}).items()
            if st is not None
        }

    def steps(self, staged: Staged) -> list[Step]:
        op = {
            "op": "dir",
            "path": self.path,
            "owner": self.owner,
            "group": self.group,
            "mode": self.mode,
        }
        return [Step(f"dir {self.path}", op)]

    @classmethod
    def removal_steps(cls, name: str) -> list[Step]:
        return [Step(f"remove dir {name}", {"op": "remove_dir", "path": name})]

    @classmethod
    def removed_path(cls, name: str) -> str | None:
        return name
