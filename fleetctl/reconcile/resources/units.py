"""A systemd unit fleetctl enables and runs, and the inputs that restart or reload it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fleetctl.reconcile.resources.base import Attrs, HostKind, Shown, Staged, Step, UnitAction


@dataclass(frozen=True)
class UnitSpec(HostKind):
    """A unit to enable and run. A change in any `restart_on` input (a file path, an env file
    the operator manages, or `package NAME`) restarts it; a change in `reload_on` reloads it.

    Units are a host's services: a host program stops the units it removes before anything
    else and starts, restarts or reloads the others after every other kind is in place."""

    kind: ClassVar[str] = "unit"
    order: ClassVar[int] = 6

    name: str
    file: str
    enabled: bool = True
    worker: str | None = None
    restart_on: tuple[str, ...] = ()
    reload_on: tuple[str, ...] = ()
    stop_timeout: int | None = None  # its TimeoutStopSec (a poller's drain), when it has one

    @property
    def key(self) -> str:
        return f"unit {self.name}"

    def fingerprint(self) -> dict[str, object]:
        return {"enabled": self.enabled, "active": self.enabled}

    def describe(self) -> tuple[str, Attrs]:
        state = "enable, start" if self.enabled else "disable, stop"
        return self.name, (("state", state),)

    def shown(self) -> Shown:
        return Shown(unit_action="start" if self.enabled else "stop")

    @classmethod
    def ask(cls, wanted: Sequence[UnitSpec], *, with_contents: bool) -> dict[str, Any]:
        return cls.recall([r.name for r in wanted])

    @classmethod
    def recall(cls, names: Sequence[str]) -> dict[str, Any]:
        return {"units": list(names)}

    @classmethod
    def read(cls, answer: Mapping[str, Any]) -> dict[str, dict[str, object]]:
        """A unit counts as there when it is enabled or running."""
        return {
            f"unit {name}": {"enabled": unit["enabled"], "active": unit["active"]}
            for name, unit in (answer.get("units") or {}).items()
            if unit["enabled"] or unit["active"]
        }

    @staticmethod
    def read_dead(answer: Mapping[str, Any]) -> dict[str, str]:
        """Enabled units that are not running: why, as people read it."""
        return {
            name: _dead_reason(unit)
            for name, unit in (answer.get("units") or {}).items()
            if unit["enabled"] and not unit["active"]
        }

    def steps(self, staged: Staged) -> list[Step]:
        return [self.action_step(self.name, "start" if self.enabled else "stop")]

    @staticmethod
    def action_step(name: str, action: UnitAction | None) -> Step:
        """What systemctl does to a unit the plan starts, restarts or reloads."""
        if action is None or action == "start":
            return Step(f"enable --now {name}", systemctl("enable", "--now", name))
        return Step(f"{action} {name}", systemctl(action, name))

    @classmethod
    def removal_steps(cls, name: str) -> list[Step]:
        return [Step(f"stop {name}", systemctl("disable", "--now", name))]

    @classmethod
    def removal_attrs(cls, name: str) -> Attrs:
        return (("state", "stop, disable"),)


def systemctl(*args: str) -> dict[str, Any]:
    return {"op": "systemctl", "args": list(args)}


def _dead_reason(unit: Mapping[str, Any]) -> str:
    state = str(unit.get("state") or "inactive")
    state = "stopped" if state == "inactive" else state
    reason = str(unit.get("reason") or "")
    return f"{state}: {reason}" if reason else state
