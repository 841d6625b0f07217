"""Where a local fleet keeps everything (`.fleetctl/` beside fleet.yaml by default), and the
files that describe a running one.

`up.json` is the public record (the task commands read it to find the bus; its contract,
with the default place of this directory, is fleetctl/bus/localfleet.py): written once the
fleet is ready, removed when it stops. `supervisor.json` is the supervisor's own progress
(pid while it starts, each reload's outcome), read by `up` and `down`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetctl.bus.localfleet import UP_JSON, pid_alive


@dataclass(frozen=True)
class StateDir:
    """The layout of one local fleet's state directory."""

    root: Path

    @property
    def nsc(self) -> Path:
        """The local fleet's own operator store and keys: never the user's production store."""
        return self.root / "nsc"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def nats_conf(self) -> Path:
        return self.nats / "nats-server.conf"

    @property
    def jetstream(self) -> Path:
        """The bus's data: kept across down/up, so queued tasks survive."""
        return self.nats / "jetstream"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def work_base(self, worker_id: str) -> Path:
        """The worker's home and work directory, as /var/lib/fleet/<id> is on a host."""
        return self.root / "workers" / worker_id

    @property
    def repos(self) -> Path:
        """The repositories' mirrors and files, as /var/lib/fleet/repos and /etc/fleet/repos
        are on a host."""
        return self.root / "repos"

    def repos_file(self, worker_id: str) -> Path:
        """The worker's REPOS_FILE, beside (not in) its directory, as in /etc on a host."""
        return self.root / "workers" / f"{worker_id}.repos.json"

    @property
    def up_json(self) -> Path:
        return self.root / UP_JSON

    @property
    def supervisor_json(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def lock(self) -> Path:
        return self.root / "supervisor.lock"

    def create(self) -> None:
        for d in (self.root, self.nats, self.logs, self.root / "workers"):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)  # creds live here


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (temp file, rename), mode 0600: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def held_lock(state: StateDir) -> Iterator[bool]:
    """The supervisor's lock, held for its whole life: True if we got it (nobody else runs
    this fleet), False if another supervisor holds it."""
    import fcntl

    state.create()
    fd = os.open(state.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def running_pid(state: StateDir) -> int | None:
    """The pid of the supervisor running this state dir, or None."""
    with held_lock(state) as free:
        if free:
            return None
    record = read_json(state.supervisor_json) or {}
    pid = record.get("pid")
    return pid if isinstance(pid, int) and pid_alive(pid) else None
