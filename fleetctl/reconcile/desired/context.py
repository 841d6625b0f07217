"""What each role's builder reads (`Context`) and adds its resources to (`Parts`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetctl.config.model import Fleet, Host
from fleetctl.reconcile.inputs import Inputs, Versions
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.mirrors import MirrorSpec
from fleetctl.reconcile.resources.packages import PackageSpec
from fleetctl.reconcile.resources.units import UnitSpec
from fleetctl.reconcile.resources.users import UserSpec


@dataclass(frozen=True)
class Context:
    fleet: Fleet
    inputs: Inputs = field(repr=False)

    def broker_key(self, broker: Host) -> str | None:
        """The broker's SSH key, as the tunnels' known_hosts pins it (None: not known)."""
        return self.inputs.broker_keys.get(broker.name)

    @property
    def versions(self) -> Versions:
        return self.inputs.versions


@dataclass
class Parts:
    """One host's resources by kind, each in the order the builders add them."""

    users: list[UserSpec] = field(default_factory=list)
    dirs: list[DirSpec] = field(default_factory=list)
    files: list[FileSpec] = field(default_factory=list)
    units: list[UnitSpec] = field(default_factory=list)
    packages: list[PackageSpec] = field(default_factory=list)
    mirrors: list[MirrorSpec] = field(default_factory=list)
    usage_paths: list[str] = field(default_factory=list)
