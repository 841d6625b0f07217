"""Every resource kind, host and bus: a new kind is its class plus a line here."""

from __future__ import annotations

from fleetctl.bus.resources import ConsumerSpec, StreamSpec
from fleetctl.reconcile.resources.base import BusKind, HostKind, JetStreamKind
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.members import MemberSpec
from fleetctl.reconcile.resources.mirrors import MirrorSpec
from fleetctl.reconcile.resources.packages import PackageSpec
from fleetctl.reconcile.resources.revocations import RevocationSpec
from fleetctl.reconcile.resources.units import UnitSpec
from fleetctl.reconcile.resources.users import UserSpec

HostResource = UserSpec | DirSpec | FileSpec | UnitSpec | PackageSpec | MirrorSpec
BusResource = StreamSpec | ConsumerSpec | RevocationSpec | MemberSpec
Resource = HostResource | BusResource

# By the first word of their keys, in the order a host program makes them (`order`).
HOST_KINDS: dict[str, type[HostKind]] = {
    UserSpec.kind: UserSpec,
    DirSpec.kind: DirSpec,
    PackageSpec.kind: PackageSpec,
    FileSpec.kind: FileSpec,
    MirrorSpec.kind: MirrorSpec,
    UnitSpec.kind: UnitSpec,
}

# The bus's kinds made through the JetStream API (fleetctl/reconcile/jetstream.py); the
# plan's other bus kinds: credentials, revoked in the local store, and a cluster's members,
# which join by themselves and are removed by fleet-sys (fleetctl/reconcile/rollout.py).
JETSTREAM_KINDS: dict[str, type[JetStreamKind]] = {
    StreamSpec.kind: StreamSpec,
    ConsumerSpec.kind: ConsumerSpec,
}
BUS_KINDS: dict[str, type[BusKind]] = {
    **JETSTREAM_KINDS,
    RevocationSpec.kind: RevocationSpec,
    MemberSpec.kind: MemberSpec,
}
