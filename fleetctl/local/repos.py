"""The repositories of a local fleet (`fleetctl up`): what apply makes on a host, under the
state dir. Each repository a started worker uses gets a bare mirror in `<state>/repos/`,
made and fetched as apply does (same refspecs, the mirror's fetch lock, its hooks off, the
pinned host key, the deploy key or token), and each such worker a REPOS_FILE naming it.

Everything runs as the user who runs `up`: the deploy key and copied files are used where
fleet.yaml has them; the token (alone) and the pinned host key are written under the state
dir, mode 0600. A repository that cannot be fetched keeps its workers from starting, saying
why; the rest of the fleet starts.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fleetctl.config.model import Fleet, Repo, Worker
from fleetctl.errors import LocalFileError
from fleetctl.identity import repocreds
from fleetctl.identity.repoaccess import git_env
from fleetctl.local.state import StateDir
from fleetctl.reconcile.desired.repos import RepoPaths, git_config, known_hosts_line, repos_file
from fleetctl.reconcile.resources.mirrors import FETCH_LOCK, FETCH_REFSPECS

GIT_TIMEOUT = 900.0  # seconds the first fetch of a repository may take
MARKER = "fleet-fetched"  # the URL the mirror was last fetched from, as on a host


class RepoSetupError(Exception):
    """A repository could not be mirrored; the message says why (never a secret)."""


@dataclass(frozen=True)
class LocalRepoPaths(RepoPaths):
    """Mirrors and written files under the state dir; the deploy key and copied files where
    fleet.yaml names them (on this machine already)."""

    def ssh_key(self, repo: Repo) -> str | None:
        return str(repo.deploy_key) if repo.deploy_key else None

    def copy_from(self, repo: Repo, index: int) -> str:
        return str(repo.copy[index].source)


def paths(state: StateDir) -> LocalRepoPaths:
    return LocalRepoPaths(mirrors=str(state.repos), etc=str(state.repos))


def prepare(fleet: Fleet, names: set[str], state: StateDir) -> dict[str, str]:
    """Mirror each named repository (fetched when new, or when its URL changed): why each
    one that could not be is not ready, by name."""
    failed = {}
    for name in sorted(names):
        try:
            _mirror(fleet.repos[name], state)
        except (RepoSetupError, LocalFileError) as e:
            failed[name] = str(e) if isinstance(e, RepoSetupError) else f"{e} ({e.fix})"
    return failed


def write_repos_file(fleet: Fleet, worker: Worker, state: StateDir) -> Path:
    """The worker's REPOS_FILE under the state dir (0600), its worktrees in its directory."""
    worktrees = str(state.work_base(worker.id) / "worktrees")
    path = state.repos_file(worker.id)
    _write(path, repos_file(fleet, worker, paths(state), worktrees))
    return path


def _mirror(repo: Repo, state: StateDir) -> None:
    secrets = repocreds.read(repo)  # the same checks as apply: a clear error, nothing made
    where = paths(state)
    etc = Path(where.file(repo.name, ""))
    etc.mkdir(mode=0o700, parents=True, exist_ok=True)
    known_hosts = None
    if repo.host_key:
        known_hosts = etc / "known_hosts"
        _write(known_hosts, known_hosts_line(repo))
    if secrets.token is not None:  # the pollers read it from here
        _write(etc / "token", secrets.token)
    gitconfig = etc / "gitconfig"
    _write(gitconfig, git_config(repo, where))
    mirror = Path(where.mirror(repo.name))
    env = git_env(
        home=mirror.parent,
        ssh_key=where.ssh_key(repo),
        known_hosts=known_hosts,
        token=secrets.token,
        gitconfig=gitconfig,
    )
    git = ["git", f"--git-dir={mirror}"]
    _git(["git", "init", "--quiet", "--bare", "--template=", str(mirror)], env)
    _git([*git, "config", "remote.origin.url", repo.url], env)
    _git([*git, "config", "--unset-all", "remote.origin.fetch"], env, ok=(0, 5))
    for refspec in FETCH_REFSPECS:
        _git([*git, "config", "--add", "remote.origin.fetch", refspec], env)
    _git([*git, "config", "core.hooksPath", os.devnull], env)
    marker = mirror / MARKER
    if _read(marker) == repo.url:
        return  # fetched before: the pollers fetch before each task
    with (mirror / FETCH_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fetch = ["fetch", "--quiet", "--no-tags", "--prune", "--no-write-fetch-head", "origin"]
        _git([*git, *fetch], env, what=f"git fetch {repo.url}")
    _write(marker, (repo.url + "\n").encode())


def _git(
    argv: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,), what: str = ""
) -> None:
    try:
        done = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise RepoSetupError("git is not installed here (install git)") from None
    except subprocess.TimeoutExpired:
        raise RepoSetupError(f"{what or argv[2]} timed out after {GIT_TIMEOUT:.0f}s") from None
    if done.returncode not in ok:
        tail = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()[-3:]
        said = what or " ".join(argv[2:4])
        raise RepoSetupError(f"{said} exited {done.returncode}: {' / '.join(tail)}")


def _write(path: Path, content: bytes) -> None:
    """Whole or not at all, mode 0600 (the token is a secret)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    tmp.replace(path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
