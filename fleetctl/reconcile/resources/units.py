"""A systemd unit fleetctl enables and runs, and the inputs that restart or reload it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UnitSpec:
    """A unit to enable and run. A change in any `restart_on` input (a file path, an env file
    the operator manages, or `package NAME`) restarts it; a change in `reload_on` reloads it."""

    name: str
    file: str
    enabled: bool = True
    worker: str | None = None
    restart_on: tuple[str, ...] = ()
    reload_on: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"unit {self.name}"
