"""A worker host's repositories: git, each used repository's user, mirror, credential,
pinned host key and copied files, and each worker's list of its repositories (the poller's
REPOS_FILE, whose format docs/poller.md defines).

Who may read what: the repository's files are root's, readable by its group
`fleet-repo-<name>` (0640), which only the units of the workers that use it join
(SupplementaryGroups=); the mirror is the group's (2770); a worker's REPOS_FILE is its own
(0640 root:fleet-<id>). docs/security.md, "Repositories".
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from fleetctl import layout
from fleetctl.config.gitvalues import parse_url
from fleetctl.config.model import Fleet, Host, Repo, Worker, worker_repo
from fleetctl.reconcile.desired.context import Context, Parts
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.mirrors import MirrorSpec
from fleetctl.reconcile.resources.packages import system_package
from fleetctl.reconcile.resources.users import UserSpec

REPOS_FORMAT = 1
# Below this much free space where its worktrees go, a poller refuses new worktrees (and
# `status --check` reports the host).
MIN_FREE_BYTES = 1024**3


@dataclass(frozen=True)
class RepoPaths:
    """Where a repository's things are, as its workers' REPOS_FILE names them: on a host
    (this layout: everything apply ships, in /etc/fleet/repos/<name>/), or for `fleetctl up`
    (fleetctl/local/repos.py: the mirrors and written files under the state dir, the deploy
    key and copied files where fleet.yaml has them)."""

    mirrors: str = layout.REPOS_DIR
    etc: str = layout.REPOS_ETC

    def mirror(self, name: str) -> str:
        return f"{self.mirrors}/{name}.git"

    def file(self, name: str, what: str) -> str:
        """deploy_key, token, known_hosts, gitconfig, copy/<n>."""
        return f"{self.etc}/{name}/{what}"

    def ssh_key(self, repo: Repo) -> str | None:
        return self.file(repo.name, "deploy_key") if repo.deploy_key else None

    def copy_from(self, repo: Repo, index: int) -> str:
        return self.file(repo.name, f"copy/{index}")


HOST_PATHS = RepoPaths()


def add_repos(ctx: Context, host: Host, workers: list[Worker], parts: Parts) -> None:
    """git, and each repository an enabled worker here uses, with what its fetch reads."""
    repos = [r for r in ctx.fleet.repos_on(host.name)]
    if not repos:
        return
    parts.packages.append(system_package("git"))
    parts.usage_paths.append(layout.REPOS_DIR)
    parts.usage_paths += [layout.worktrees(w.work_base) for w in workers if w.repos]
    for repo in repos:
        users = [w.id for w in workers if repo.name in w.repos]
        owner = users[0] if len(users) == 1 else None
        _add_repo(ctx, repo, owner, parts)


def _add_repo(ctx: Context, repo: Repo, owner: str | None, parts: Parts) -> None:
    user, paths = repo.user, HOST_PATHS
    parts.users.append(UserSpec(user, paths.mirror(repo.name), owner))
    parts.dirs.append(DirSpec(layout.repo_etc(repo.name), "root", user, 0o750, owner))
    secrets = ctx.inputs.repo_secrets.get(repo.name)

    def secret(what: str, content: bytes) -> str:
        path = paths.file(repo.name, what)
        parts.files.append(FileSpec(path, content, "root", user, 0o640, True, owner))
        return path

    ssh_key = known_hosts = token = None
    if repo.deploy_key and secrets and secrets.deploy_key:
        ssh_key = secret("deploy_key", secrets.deploy_key)
    if repo.token and secrets and secrets.token:
        token = secret("token", secrets.token)
    for i, content in enumerate(secrets.copies if secrets else ()):
        secret(f"copy/{i}", content)
    if repo.host_key:
        known_hosts = paths.file(repo.name, "known_hosts")
        parts.files.append(FileSpec(known_hosts, known_hosts_line(repo), worker=owner))
    gitconfig = paths.file(repo.name, "gitconfig")
    parts.files.append(FileSpec(gitconfig, git_config(repo, paths), worker=owner))
    mirror = MirrorSpec(repo.name, repo.url, user, ssh_key, known_hosts, token, gitconfig, owner)
    parts.mirrors.append(mirror)


def known_hosts_line(repo: Repo) -> bytes:
    """The pinned host key, as ssh reads it in known_hosts (`[host]:port` off port 22)."""
    assert repo.host_key is not None
    key = " ".join(repo.host_key.split()[:2])
    return f"{parse_url(repo.url).known_hosts_name} {key}\n".encode()


def git_config(repo: Repo, paths: RepoPaths) -> bytes:
    """git's global config for the mirror's users: the mirror (a shared repository another
    user owns) and a file:// remote are safe directories, which git (2.35.2 and later)
    otherwise refuses to work in, and takes only from a config file."""
    safe = [paths.mirror(repo.name)]
    url = parse_url(repo.url)
    if url.scheme == "file":
        safe.append(url.path)
    lines = [f"# Managed by fleetctl: git's settings for repository {repo.name}.", "[safe]"]
    lines += [f"\tdirectory = {path}" for path in safe]
    return ("\n".join(lines) + "\n").encode()


def add_repos_file(fleet: Fleet, worker: Worker, parts: Parts) -> None:
    """The worker's REPOS_FILE: readable by root and the worker only."""
    if not worker.repos:
        return
    content = repos_file(fleet, worker, HOST_PATHS, layout.worktrees(worker.work_base))
    path = layout.repos_file(worker.id)
    user = worker.service_user
    parts.dirs.append(DirSpec(posixpath.dirname(path), "root", user, 0o750, worker.id))
    parts.files.append(
        FileSpec(path, content, "root", worker.service_user, 0o640, False, worker.id)
    )


def repos_file(fleet: Fleet, worker: Worker, paths: RepoPaths, worktrees: str) -> bytes:
    doc = repos_document(fleet, worker, paths, worktrees)
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def repos_document(
    fleet: Fleet, worker: Worker, paths: RepoPaths, worktrees: str
) -> dict[str, Any]:
    """docs/poller.md's REPOS_FILE: the worker's repositories, as it uses them (its
    `create_pr` pushes and opens pull requests for its tasks)."""
    return {
        "format": REPOS_FORMAT,
        "default": worker.repo,
        "worktrees": worktrees,
        "min_free_bytes": MIN_FREE_BYTES,
        "repos": {name: _entry(worker, fleet.repos[name], paths) for name in worker.repos},
    }


def _entry(worker: Worker, repo: Repo, paths: RepoPaths) -> dict[str, Any]:
    used = worker_repo(worker, repo)
    pull = used.pull_request
    name = repo.name

    def optional(present: object, what: str) -> str | None:
        return paths.file(name, what) if present else None

    return {
        "url": repo.url,
        "mirror": paths.mirror(name),
        "ref": repo.ref,
        "ssh_key": paths.ssh_key(repo),
        "known_hosts": optional(repo.host_key, "known_hosts"),
        "token_file": optional(repo.token, "token"),
        "gitconfig": paths.file(name, "gitconfig"),
        "setup": list(repo.setup),
        "check": list(repo.check),
        "copy": [
            {"from": paths.copy_from(repo, i), "to": str(PurePosixPath(c.to))}
            for i, c in enumerate(repo.copy)
        ],
        "push": used.push,
        "pull_request": (
            None if pull is None else {"api": pull.api, "repo": pull.repo, "base": pull.base}
        ),
        "retain_s": repo.retain,
    }
