"""A local fleet (`fleetctl up`) as the task commands find it: its state directory beside
fleet.yaml, the `up.json` its supervisor writes there once the fleet is ready (removed when
it stops), and whether that supervisor still lives.

The contract between the writer (fleetctl/local/supervisor.py) and the reader
(fleetctl/tasks/reach.py), kept below both so that reaching the bus needs nothing of how a
local fleet is run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UP_VERSION = 1
STATE_DIR_NAME = ".fleetctl"
UP_JSON = "up.json"


def default_state_dir(fleet_path: Path) -> Path:
    return fleet_path.resolve().parent / STATE_DIR_NAME


def up_file(fleet_path: Path) -> Path:
    """Where `fleetctl up` describes the local fleet of this fleet file (its default state
    directory: an `up --state-dir` elsewhere is not looked for)."""
    return default_state_dir(fleet_path) / UP_JSON


def up_record(
    fleet_path: Path,
    pid: int,
    nats_url: str,
    creds: dict[str, str],
    workers: list[str],
    brokers: list[str] | None = None,
) -> dict[str, Any]:
    """The up.json contract (read by `local_fleet`). `nats_url`: one URL, or a local
    cluster's, comma-separated; `brokers`: the local nats-servers' names."""
    return {
        "version": UP_VERSION,
        "fleet": str(fleet_path.resolve()),
        "pid": pid,
        "nats_url": nats_url,
        "creds": creds,
        "workers": workers,
        "brokers": brokers or [],
    }


@dataclass(frozen=True)
class LocalFleet:
    """A running local fleet, as `fleetctl up` describes it in up.json."""

    nats_url: str
    creds: dict[str, Path]
    workers: tuple[str, ...]
    pid: int
    brokers: tuple[str, ...] = ()  # its nats-servers (several: a local cluster)


def local_fleet(fleet_path: Path) -> LocalFleet | None:
    """The local fleet running for this fleet file, if its up.json is there, names this
    file and its supervisor is alive; None otherwise (a stale file is ignored)."""
    path = up_file(fleet_path)
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != UP_VERSION:
        return None
    if data.get("fleet") != str(fleet_path.resolve()):
        return None
    pid, url, creds = data.get("pid"), data.get("nats_url"), data.get("creds") or {}
    if not isinstance(pid, int) or not isinstance(url, str) or not pid_alive(pid):
        return None
    return LocalFleet(
        nats_url=url,
        creds={str(k): Path(v) for k, v in creds.items() if isinstance(v, str)},
        workers=tuple(str(w) for w in data.get("workers") or ()),
        pid=pid,
        brokers=tuple(str(b) for b in data.get("brokers") or ()),
    )


def pid_alive(pid: int) -> bool:
    """Is `pid` a live process (a zombie, exited but not yet reaped, is not)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
