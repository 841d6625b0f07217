"""What fleetctl knows about a host and the bus: the observed types, what to ask a host's
agent (`request`) and how to read its answer (`parse`). Pure: tested without a host; the
agent client (`fleetctl/reconcile/agent_client.py`) and the bus client do the I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl import layout
from fleetctl.artifacts import brokerbinary
from fleetctl.reconcile.desired.state import HostState
from fleetctl.reconcile.resources.packages import NATS_PACKAGE, POLLER_PACKAGE, PackageSpec

VERSION_PROBES = {POLLER_PACKAGE: layout.POLLER_VERSION_FILE, NATS_PACKAGE: layout.NATS_BIN}
# Packages the agent identifies by the sha256 of their file (never by running it).
HASHED_PACKAGES = (NATS_PACKAGE,)
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


@dataclass(frozen=True)
class PythonFacts:
    version: str
    platform: str
    libc: str


def request(state: HostState, *, with_contents: bool) -> dict[str, Any]:
    """What to ask the agent: every path and unit the fleet wants here (the agent adds what
    the manifest lists), and file contents only when a diff will be shown."""
    files = [r.path for r in state.files]
    env_files = sorted({t for u in state.units for t in (*u.restart_on, *u.reload_on)} - set(files))
    env_files = [t for t in env_files if t.startswith("/")]
    return {
        "op": "observe",
        "state_dir": layout.STATE_DIR,
        "files": files,
        "dirs": [r.path for r in state.dirs],
        "users": [r.name for r in state.users],
        "units": [r.name for r in state.units],
        "env_files": env_files,
        "contents": [r.path for r in state.files if not r.sensitive] if with_contents else [],
        "versions": {p.name: version_probe(p) for p in state.packages},
        "hashed": list(HASHED_PACKAGES),
        "node": any(p.cli is not None and p.cli.node is not None for p in state.packages),
    }


def version_probe(package: PackageSpec) -> str:
    """Where the agent reads a package's installed version."""
    if package.cli is not None:
        cli = package.cli
        return f"{layout.llm_cli_dir(cli.package, cli.version)}/{layout.LLM_CLI_VERSION_FILE}"
    return VERSION_PROBES[package.name]


def parse(facts: Mapping[str, Any]) -> ObservedHost:
    """The agent's answer as fingerprints in the plan's terms (see plan.changes.fingerprint)."""
    resources: dict[str, dict[str, object]] = {}
    for path, st in (facts.get("files") or {}).items():
        if st is not None:
            resources[f"file {path}"] = {
                "sha256": st["sha256"],
                "mode": st["mode"],
                "owner": st["owner"],
                "group": st["group"],
            }
    for path, st in (facts.get("dirs") or {}).items():
        if st is not None:
            resources[f"dir {path}"] = {
                "mode": st["mode"],
                "owner": st["owner"],
                "group": st["group"],
            }
    for name, user in (facts.get("users") or {}).items():
        if user is not None:
            resources[f"user {name}"] = {"home": user["home"]}
    dead: dict[str, str] = {}
    for name, unit in (facts.get("units") or {}).items():
        if unit["enabled"] or unit["active"]:
            resources[f"unit {name}"] = {"enabled": unit["enabled"], "active": unit["active"]}
        if unit["enabled"] and not unit["active"]:
            dead[name] = _dead_reason(unit)
    for name, version in (facts.get("versions") or {}).items():
        if version and name == NATS_PACKAGE:
            version = brokerbinary.identify(version)
        if version:
            resources[f"package {name}"] = {"version": version}
    contents = {
        f"file {path}": base64.b64decode(data)
        for path, data in (facts.get("contents") or {}).items()
    }
    manifest = facts.get("manifest") or {}
    journal = facts.get("journal") or {}
    return ObservedHost(
        resources=resources,
        contents=contents,
        managed=frozenset(manifest.get("resources") or {}),
        unit_inputs={k: dict(v) for k, v in (manifest.get("units") or {}).items()},
        env_files={k: v for k, v in (facts.get("env_files") or {}).items()},
        pending=tuple(sorted(journal.get("restart") or ())),
        manifest_revision=str(manifest.get("revision") or ""),
        corrupt_manifest=bool(manifest.get("_corrupt")),
        dead_units=dead,
        node=facts.get("node") if isinstance(facts.get("node"), str) else None,
    )


def _dead_reason(unit: Mapping[str, Any]) -> str:
    state = str(unit.get("state") or "inactive")
    state = "stopped" if state == "inactive" else state
    reason = str(unit.get("reason") or "")
    return f"{state}: {reason}" if reason else state


def python_facts(facts: Mapping[str, Any]) -> PythonFacts:
    p = facts.get("python") or {}
    return PythonFacts(str(p.get("version")), str(p.get("platform")), str(p.get("libc")))
