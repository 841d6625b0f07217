"""The desired state's types: a `HostState` per host, one `BusState`, the `FleetState`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleetctl.bus.resources import ConsumerSpec, StreamSpec
from fleetctl.config.model import Host
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.kinds import HostResource
from fleetctl.reconcile.resources.members import MemberSpec
from fleetctl.reconcile.resources.mirrors import MirrorSpec
from fleetctl.reconcile.resources.packages import PackageSpec
from fleetctl.reconcile.resources.revocations import RevocationSpec
from fleetctl.reconcile.resources.units import UnitSpec
from fleetctl.reconcile.resources.users import UserSpec


@dataclass(frozen=True)
class HostState:
    """Everything fleetctl wants on one host, in apply order."""

    host: Host
    users: tuple[UserSpec, ...] = ()
    dirs: tuple[DirSpec, ...] = ()
    files: tuple[FileSpec, ...] = ()
    units: tuple[UnitSpec, ...] = ()
    disabled_workers: tuple[str, ...] = ()
    packages: tuple[PackageSpec, ...] = ()
    # Files whose content cannot be known now (the tunnels' known_hosts while the broker's
    # SSH key is unknown): neither planned nor removed, and no unit restarts on their account.
    unknown_files: tuple[str, ...] = ()
    # Inputs of a unit that are neither files nor packages, by trigger name (a digest of
    # settings a program reads only at start: a unit lists the trigger in `restart_on`).
    settings: Mapping[str, str] = field(default_factory=dict)
    mirrors: tuple[MirrorSpec, ...] = ()  # one per repository its workers use
    # Where the repositories take disk space here (the mirrors' directory first, then each
    # worker's worktrees): what `status` sums and checks the free space of.
    usage_paths: tuple[str, ...] = ()

    def resources(self) -> Iterable[tuple[HostResource, str | None]]:
        """Every resource with the worker it belongs to (None: shared by the host)."""
        host_resources: tuple[HostResource, ...] = (
            *self.users,
            *self.dirs,
            *self.packages,
            *self.files,
            *self.mirrors,
            *self.units,
        )
        for r in host_resources:
            yield r, r.worker


@dataclass(frozen=True)
class BusState:
    """What the task bus must hold: its streams, one consumer per enabled worker, and the
    credentials to revoke. It lives on `homes`, the broker hosts (one, or a cluster's three
    or five: its `members`), and is reached through the first that answers."""

    homes: tuple[str, ...]
    streams: tuple[StreamSpec, ...] = ()
    consumers: tuple[tuple[ConsumerSpec, str], ...] = ()  # (consumer, its worker)
    revocations: tuple[RevocationSpec, ...] = ()
    consumer_stream: str = ""  # where the workers' consumers are (and orphans are looked for)
    route_consumers: tuple[ConsumerSpec, ...] = ()  # the shared queues of `pick: any` routes
    members: tuple[MemberSpec, ...] = ()  # a cluster's brokers (none with one broker)

    def resources(self) -> Iterable[tuple[StreamSpec | ConsumerSpec | MemberSpec, str | None]]:
        """The cluster's members and the JetStream resources, with the worker each belongs
        to (None: shared)."""
        for m in self.members:
            yield m, None
        for s in self.streams:
            yield s, None
        yield from self.consumers
        for c in self.route_consumers:
            yield c, None


@dataclass(frozen=True)
class FleetState:
    """The whole desired state: every host (in servers.yaml order) and the bus."""

    hosts: Mapping[str, HostState]
    bus: BusState
