"""A directory fleetctl makes on a host, with its owner and mode."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DirSpec:
    path: str
    owner: str
    group: str
    mode: int = 0o750
    worker: str | None = None

    @property
    def key(self) -> str:
        return f"dir {self.path}"
