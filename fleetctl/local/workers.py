"""How each worker's poller is started locally: exactly its unit's environment (the same
function renders the unit's Environment= lines), with the paths it names moved under the
state dir, and why a worker cannot start here (its CLI or env file is missing).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from fleetctl.artifacts import clicache
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.config.model import Fleet, Worker
from fleetctl.layout import creds_path, repos_file
from fleetctl.reconcile.desired.poller_env import poller_unit_environment
from fleetctl.reconcile.desired.workers import poller_stop_timeout

# What systemd gives every service besides its Environment= lines (systemd.exec(5)).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
CLI_MISSING = "not found in the CLI cache"  # how `missing` says a pinned LLM CLI is not here

_INSTALL_HINTS = {
    "claude-code": "install Claude Code, or set bin:",
    "zai": "install Claude Code, or set bin:",
    "codex": "install the Codex CLI, or set bin:",
    "gemini": "install the Gemini CLI, or set bin:",
}


@dataclass(frozen=True)
class Launch:
    """One poller process: what runs, with which environment, where."""

    worker_id: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: Path
    creds_sha256: str = ""
    # Seconds from SIGTERM until its process group is killed: its unit's TimeoutStopSec.
    stop_timeout: float = 90.0

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the unit or its creds would change (a host restarts the
        unit on either): `up --reload` restarts on it."""
        blob = json.dumps([self.argv, self.env, str(self.cwd), self.creds_sha256]).encode()
        return hashlib.sha256(blob).hexdigest()


def cli_of(worker: Worker) -> str | None:
    """The program the worker's backend runs: its `bin`, its command's first word, or the
    pinned CLI in this machine's CLI cache (where apply installs it before it bundles it)."""
    if worker.backend == "command":
        return worker.command[0] if worker.command else None
    if worker.cli is not None:
        try:
            found = clicache.installed(worker.cli)  # checked against its lock
        except ArtifactError:
            return None  # missing() says why
        return str(found) if found is not None else None
    return worker.bin


def missing(worker: Worker, path: str = SYSTEMD_PATH) -> str | None:
    """Why this worker cannot start on this machine, or None."""
    if worker.cli is not None:
        pinned = f"{worker.cli.package}@{worker.cli.version}"
        try:
            if clicache.installed(worker.cli) is None:
                fix = "`fleetctl up --install-clis` fetches it with npm, or set bin:"
                return f"{pinned} {CLI_MISSING} ({fix})"
        except ArtifactError as e:
            return str(e)
    cli = cli_of(worker)
    if cli is not None:
        found = cli if "/" in cli else shutil.which(cli, path=path)
        if found is None or not os.access(found, os.X_OK) or Path(found).is_dir():
            fix = "change command:" if worker.backend == "command" else "set bin:"
            hint = _INSTALL_HINTS.get(worker.llm, f"install it, or {fix}")
            return f"{cli} not found ({hint})"
    if worker.env_file and not os.access(worker.env_file, os.R_OK):
        return f"env file {worker.env_file} not readable (create it, or remove env_file:)"
    return None


def read_env_file(path: str) -> list[tuple[str, str]]:
    """systemd's EnvironmentFile= format: KEY=VALUE lines, # comments, optional quotes."""
    out = []
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out.append((key.strip(), value))
    return out


def _identity() -> list[tuple[str, str]]:
    """USER and LOGNAME, as systemd sets them for a unit with User=."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return []
    return [("USER", name), ("LOGNAME", name)]


def launch(
    fleet: Fleet, worker: Worker, work_base: Path, creds: Path, repos: Path | None = None
) -> Launch:
    """The poller of `worker` as its unit runs it, remapped: its creds file, home and work
    directories, and its repositories' file (`repos`) become the local ones (`fleet` is the
    local fleet: its bus URL is local)."""
    remote_creds = creds_path(worker.id)
    remote_repos = repos_file(worker.id)

    def remap(value: str) -> str:
        if value == remote_creds:
            return str(creds)
        if value == remote_repos and repos is not None:
            return str(repos)
        if worker.cli is not None and value == worker.bin:
            return cli_of(worker) or value
        if value == worker.work_base or value.startswith(worker.work_base + "/"):
            return str(work_base) + value[len(worker.work_base) :]
        return value

    env = [(k, remap(v)) for k, v in poller_unit_environment(fleet, worker)]
    env += [("PATH", SYSTEMD_PATH), *_identity()]
    if worker.env_file:
        env += read_env_file(worker.env_file)
    # The unit's ExecStart is the poller venv's fleet-poller; locally, this Python's poller.
    argv = (sys.executable, "-m", "poller")
    digest = hashlib.sha256(creds.read_bytes()).hexdigest() if creds.exists() else ""
    return Launch(worker.id, argv, tuple(env), work_base, digest, poller_stop_timeout(worker))
