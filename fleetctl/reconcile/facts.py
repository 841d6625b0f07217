"""What fleetctl knows about a host and the bus: the observed types, what to ask a host's
agent (`request`) and how to read its answer (`parse`), each resource kind for its part
(fleetctl/reconcile/resources/). Pure: tested without a host; the agent client
(`fleetctl/reconcile/agent_client.py`) and the bus client do the I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fleetctl import layout
from fleetctl.bus.clusterview import ClusterView
from fleetctl.config.model import Fleet
from fleetctl.reconcile.desired.state import HostState
from fleetctl.reconcile.kept import Kept, parse_kept
from fleetctl.reconcile.resources.base import HostKind
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.kinds import HOST_KINDS
from fleetctl.reconcile.resources.units import UnitSpec

MANIFEST = f"{layout.STATE_DIR}/manifest.json"
JOURNAL = f"{layout.STATE_DIR}/journal.json"


@dataclass(frozen=True)
class ObservedHost:
    """What a host has of fleetctl's resources: fingerprint by resource key, what its
    manifest says fleetctl owns, and the inputs each unit was last (re)started with."""

    resources: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    contents: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    managed: frozenset[str] = frozenset()
    unit_inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    env_files: Mapping[str, str | None] = field(default_factory=dict)
    pending: tuple[str, ...] = ()  # units an interrupted apply still had to restart
    manifest_revision: str = ""
    corrupt_manifest: bool = False
    # Enabled units that are not running: why, as people read it ("failed: <last log line>").
    dead_units: Mapping[str, str] = field(default_factory=dict)
    # `node --version` on the PATH the units run with, when a CLI there needs Node ("": none).
    node: str | None = None
    # `status`: bytes used under each of HostState.usage_paths (None: not there), and the free
    # bytes where the first of them is (None: not asked, or none there).
    usage: Mapping[str, int | None] = field(default_factory=dict)
    free_bytes: int | None = None
    # The previous versions the host keeps (rollback), and its own last rollback.
    kept: Kept = field(default_factory=Kept)


@dataclass(frozen=True)
class ObservedBus:
    """What the bus holds of fleetctl's streams and consumers (fingerprint by key), and
    which of them fleetctl made (consumers with the worker prefix). `reachable` is False
    when nothing answered at the broker's NATS address, `error` then says what was seen."""

    resources: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    managed: frozenset[str] = frozenset()
    reachable: bool = True
    error: str = ""
    warnings: tuple[str, ...] = ()  # streams near their limits, from what the server said
    queued: Mapping[str, int] = field(default_factory=dict)  # consumer key -> tasks waiting
    running: Mapping[str, int] = field(default_factory=dict)  # consumer key -> tasks delivered
    via: str = ""  # the home it was read through ("": not read through a host)
    cluster: ClusterView | None = None  # a cluster's brokers as fleet-sys saw them


def most_copies(bus: ObservedBus) -> int:
    """The most copies any stream observed has (1 on a single broker, or none read)."""
    replicas = (v.get("num_replicas") for k, v in bus.resources.items() if k.startswith("stream "))
    return max((r for r in replicas if isinstance(r, int)), default=1)


def staying(fleet: Fleet) -> tuple[str, ...]:
    """The broker that stays when a cluster goes back to one (a cluster: none, every broker
    is a member)."""
    return () if fleet.is_cluster else tuple(h.name for h in fleet.brokers)


def with_cluster(bus: ObservedBus, view: ClusterView, staying: Collection[str] = ()) -> ObservedBus:
    """The bus with its cluster's members as fleet-sys saw them (a standalone broker is the
    only member of its own): each one fleetctl's, so one that left servers.yaml is planned
    for removal. `staying`: a cluster going back to one broker, whose broker stays (not a
    member of a cluster any more, but not leaving either)."""
    members = (m for m in view.members if m not in staying)
    keys: dict[str, Mapping[str, object]] = {f"member {m}": {} for m in members}
    resources: dict[str, Mapping[str, object]] = {**bus.resources, **keys}
    return replace(bus, resources=resources, managed=bus.managed | set(keys), cluster=view)


@dataclass(frozen=True)
class PythonFacts:
    version: str
    platform: str
    libc: str


def request(state: HostState, *, with_contents: bool, with_usage: bool = False) -> dict[str, Any]:
    """What to ask the agent: each kind's part for what the fleet wants here (the agent adds
    what the manifest lists), the inputs of units that are not fleetctl's files, and (for
    `status`) the disk the repositories use and the space left."""
    wanted: dict[str, list[HostKind]] = {kind: [] for kind in HOST_KINDS}
    for resource, _ in state.resources():
        wanted[resource.kind].append(resource)
    req: dict[str, Any] = {"op": "observe", "state_dir": layout.STATE_DIR}
    for kind, cls in HOST_KINDS.items():
        req |= cls.ask(wanted[kind], with_contents=with_contents)
    files = [r.path for r in state.files]
    env_files = sorted({t for u in state.units for t in (*u.restart_on, *u.reload_on)} - set(files))
    req["env_files"] = [t for t in env_files if t.startswith("/")]
    if with_usage and state.usage_paths:
        req["usage"] = list(state.usage_paths)
    return req


def parse(facts: Mapping[str, Any]) -> ObservedHost:
    """The agent's answer as fingerprints in the plan's terms (each kind's `read`)."""
    resources: dict[str, dict[str, object]] = {}
    for cls in HOST_KINDS.values():
        resources |= cls.read(facts)
    manifest = facts.get("manifest") or {}
    journal = facts.get("journal") or {}
    return ObservedHost(
        resources=resources,
        contents=FileSpec.read_contents(facts),
        managed=frozenset(manifest.get("resources") or {}),
        unit_inputs={k: dict(v) for k, v in (manifest.get("units") or {}).items()},
        env_files={k: v for k, v in (facts.get("env_files") or {}).items()},
        pending=tuple(sorted(journal.get("restart") or ())),
        manifest_revision=str(manifest.get("revision") or ""),
        corrupt_manifest=bool(manifest.get("_corrupt")),
        dead_units=UnitSpec.read_dead(facts),
        node=facts.get("node") if isinstance(facts.get("node"), str) else None,
        **_usage(facts.get("usage")),
        kept=parse_kept(facts.get("previous")),
    )


def _usage(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        return {}
    raw = answer.get("bytes")
    used: dict[str, Any] = raw if isinstance(raw, dict) else {}
    free = answer.get("free")
    return {
        "usage": {str(k): v if isinstance(v, int) else None for k, v in used.items()},
        "free_bytes": free if isinstance(free, int) else None,
    }


def python_facts(facts: Mapping[str, Any]) -> PythonFacts:
    p = facts.get("python") or {}
    return PythonFacts(str(p.get("version")), str(p.get("platform")), str(p.get("libc")))
