"""Observe a host in one round trip: the agent stats what the fleet wants and what the
host's manifest says fleetctl owns; `parse` turns its JSON into an ObservedHost.

`request` and `parse` are pure (tested without a host); `observe` is the only I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetctl import layout
from fleetctl.desired import NATS_PACKAGE, POLLER_PACKAGE, HostState
from fleetctl.hostside import source
from fleetctl.plan import ObservedHost
from fleetctl.transport.base import Held, Transport, TransportError

VERSION_PROBES = {POLLER_PACKAGE: layout.POLLER_VERSION_FILE, NATS_PACKAGE: layout.NATS_BIN}
MANIFEST = f"{layout.STATE_DIR}/manifest.json"
JOURNAL = f"{layout.STATE_DIR}/journal.json"


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
        "versions": {p.name: VERSION_PROBES[p.name] for p in state.packages},
    }


def agent_program(req: Mapping[str, Any]) -> bytes:
    """The agent's source plus the call, sent on stdin: nothing secret on a command line.
    The request (JSON data: dicts, lists, strings, numbers, booleans, None) is written as a
    Python literal, which the host's interpreter reads without a JSON parser."""
    names = ["agent"] if req.get("op") == "observe" else ["agent", "steps"]
    sources = [source(name) for name in names]
    return ("\n".join(sources) + f"\nmain({dict(req)!r})\n").encode()


AGENT_ARGV = ("python3", "-I", "-S", "-")  # isolated, no site: the stdlib is all it needs


def observe(transport: Transport, req: Mapping[str, Any]) -> dict[str, Any]:
    done = transport.run(AGENT_ARGV, agent_program(req), timeout=120)
    if done.code != 0:
        raise TransportError(transport.name, agent_failure(done.code, done.stderr))
    try:
        facts: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise TransportError(transport.name, "the host agent's answer was not JSON") from None
    return facts


def observe_under_lock(lock: Held, host: str, req: Mapping[str, Any]) -> dict[str, Any]:
    """The same observation, asked of the process that holds the host's apply lock."""
    lock.send(json.dumps(req).encode() + b"\n")
    line = lock.readline()
    try:
        answer: dict[str, Any] = json.loads(line)
    except ValueError:
        raise TransportError(host, "the host lock process stopped answering") from None
    return answer


def agent_failure(code: int, stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    if code == 127 or "python3: not found" in text or "No such file" in text[:200]:
        return (
            "python3 is not installed on the host; fleetctl's agent needs it (apt install python3)"
        )
    last = text.splitlines()[-1] if text else f"exit code {code}"
    return f"the host agent failed: {last}"


def parse(facts: Mapping[str, Any]) -> ObservedHost:
    """The agent's answer as fingerprints in the plan's terms (see plan.fingerprint)."""
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
    for name, unit in (facts.get("units") or {}).items():
        if unit["enabled"] or unit["active"]:
            resources[f"unit {name}"] = {"enabled": unit["enabled"], "active": unit["active"]}
    for name, version in (facts.get("versions") or {}).items():
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
    )


def python_facts(facts: Mapping[str, Any]) -> PythonFacts:
    p = facts.get("python") or {}
    return PythonFacts(str(p.get("version")), str(p.get("platform")), str(p.get("libc")))
