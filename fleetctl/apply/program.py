"""One host's part of a plan -> the agent's steps, in the order that keeps the host sound.

Pure: a HostPlan (and what was observed) in, data out. Tests assert the exact steps, the
way Kamal's tests assert command lines.

Order: journal of pending restarts first; stop orphan units; users, dirs, packages, files;
remove orphans; one daemon-reload; start, restart, reload units; the manifest last, then
the journal is cleared. An apply killed anywhere is finished by the next one: files are
renamed into place whole, and the units still to restart are in the journal.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl import layout
from fleetctl.desired import (
    NATS_PACKAGE,
    POLLER_PACKAGE,
    DirSpec,
    FileSpec,
    PackageSpec,
    UserSpec,
)
from fleetctl.facts import JOURNAL, MANIFEST
from fleetctl.plan import Change, HostPlan, ObservedHost

MANIFEST_FORMAT = 1
NATS_KINDS = ("stream", "consumer")
LOCAL_KINDS = ("credentials",)  # done in the local nsc store, not on the host


@dataclass(frozen=True)
class Step:
    label: str  # what the progress display shows; never a secret
    op: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class HostProgram:
    steps: tuple[Step, ...]
    poller_version: str | None = None  # a wheelhouse of this version must be uploaded first
    nats_server: bool = False  # the nats-server binary must be uploaded first
    nats_changes: tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.steps and not self.nats_changes


def staging_wheelhouse(version: str) -> str:
    return f"{layout.STAGING_DIR}/wheelhouse-{version.replace('+', '_')}"


STAGED_NATS = f"{layout.STAGING_DIR}/nats-server"


def program(
    plan: HostPlan,
    observed: ObservedHost,
    *,
    revision: str,
    applied_by: str,
    nats_sha256: str | None = None,
) -> HostProgram:
    host_changes = [c for c in plan.changes if c.kind not in (*NATS_KINDS, *LOCAL_KINDS)]
    nats_changes = tuple(c for c in plan.changes if c.kind in NATS_KINDS)
    if not host_changes:
        return HostProgram((), nats_changes=nats_changes)
    steps: list[Step] = []
    creates = [c for c in host_changes if c.action != "delete"]
    deletes = [c for c in host_changes if c.action == "delete"]
    unit_changes = [c for c in creates if c.kind == "unit"]
    pending = sorted({c.name for c in unit_changes})
    if pending:
        steps.append(_write("record pending restarts", JOURNAL, _json({"restart": pending}), 0o600))
    for c in deletes:
        if c.kind == "unit":
            steps.append(Step(f"stop {c.name}", _systemctl("disable", "--now", c.name)))
    poller_version = None
    nats_server = False
    for kind in ("user", "dir", "package", "file"):
        for c in creates:
            if c.kind != kind:
                continue
            match c.resource:
                case UserSpec() as r:
                    steps.append(
                        Step(f"user {r.name}", {"op": "user", "name": r.name, "home": r.home})
                    )
                case DirSpec() as r:
                    op = {
                        "op": "dir",
                        "path": r.path,
                        "owner": r.owner,
                        "group": r.group,
                        "mode": r.mode,
                    }
                    steps.append(Step(f"dir {r.path}", op))
                case PackageSpec(name=name, version=version) if name == POLLER_PACKAGE:
                    poller_version = version
                    steps.append(Step(f"install the poller {version}", _install_poller(version)))
                case PackageSpec(name=name, version=version) if name == NATS_PACKAGE:
                    nats_server = True
                    op = {"op": "install_binary", "src": STAGED_NATS, "dest": layout.NATS_BIN}
                    op["sha256"] = nats_sha256
                    steps.append(Step(f"install {version}", op))
                case FileSpec() as r:
                    steps.append(Step(f"file {r.path}", _file_op(r)))
                case _:
                    raise ValueError(f"cannot apply {c.kind} {c.name}")
    for kind, op_name in (("file", "remove_file"), ("dir", "remove_dir"), ("user", "remove_user")):
        for c in deletes:
            if c.kind == kind:
                target = "name" if kind == "user" else "path"
                steps.append(Step(f"remove {kind} {c.name}", {"op": op_name, target: c.name}))
    unit_files = [
        c for c in host_changes if c.kind == "file" and c.name.startswith(layout.SYSTEMD_DIR + "/")
    ]
    if unit_files:
        steps.append(Step("systemctl daemon-reload", _systemctl("daemon-reload")))
    for c in sorted(unit_changes, key=_start_order):
        steps.append(_unit_step(c))
    steps.append(
        _write(
            "write the manifest",
            MANIFEST,
            _json(_manifest(plan, observed, revision=revision, applied_by=applied_by)),
            0o600,
        )
    )
    if pending:
        steps.append(Step("clear the journal", {"op": "remove_file", "path": JOURNAL}))
    return HostProgram(tuple(steps), poller_version, nats_server, nats_changes)


def _start_order(change: Change) -> tuple[int, str]:
    """The tunnel and the broker before the pollers that need them."""
    return (0 if change.worker is None else 1, change.name)


def _unit_step(change: Change) -> Step:
    action = dict(change.attrs).get("action", "")
    if change.action == "create" or not action:
        return Step(f"enable --now {change.name}", _systemctl("enable", "--now", change.name))
    verb = action.split(":", 1)[0]
    return Step(f"{verb} {change.name}", _systemctl(verb, change.name))


def _systemctl(*args: str) -> dict[str, Any]:
    return {"op": "systemctl", "args": list(args)}


def _install_poller(version: str) -> dict[str, Any]:
    return {
        "op": "install_poller",
        "link": layout.POLLER_VENV,
        "version": version,
        "wheelhouse": staging_wheelhouse(version),
    }


def _file_op(spec: FileSpec) -> dict[str, Any]:
    return {
        "op": "file",
        "path": spec.path,
        "content": base64.b64encode(spec.content).decode("ascii"),
        "sha256": spec.sha256,
        "owner": spec.owner,
        "group": spec.group,
        "mode": spec.mode,
    }


def _write(label: str, path: str, content: bytes, mode: int) -> Step:
    return Step(label, _file_op(FileSpec(path, content, mode=mode)))


def _json(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def _manifest(
    plan: HostPlan, observed: ObservedHost, *, revision: str, applied_by: str
) -> dict[str, Any]:
    """What fleetctl owns here after this apply: the kept resources, plus what an earlier
    apply owned that this (perhaps --worker narrowed) plan neither keeps nor deletes."""
    deleted = {f"{c.kind} {c.name}" for c in plan.changes if c.action == "delete"}
    owned = (set(observed.managed) - deleted) | set(plan.wanted)
    owned = {k for k in owned if k.split(" ", 1)[0] not in (*NATS_KINDS, *LOCAL_KINDS)}
    units = {k: dict(v) for k, v in observed.unit_inputs.items() if f"unit {k}" in owned}
    units.update({k: dict(v) for k, v in plan.unit_inputs.items()})
    return {
        "format": MANIFEST_FORMAT,
        "revision": revision,
        "applied_at": int(time.time()),
        "applied_by": applied_by,
        "resources": {k: None for k in sorted(owned)},
        "units": dict(sorted(units.items())),
    }
