"""Keeping the worker's disk bounded: finished worktrees removed after their repository's
`retain`, places left by a poller that died removed, the mirrors pruned and packed.

One sweep (at start, after a task at most every SWEEP_EVERY seconds, and before refusing a
task for want of space):
- a finished place past `finished_at + retain_s` is removed; if its branch was pushed, the
  branch is deleted from the mirror too (the remote has it); an unpushed branch stays, it is
  the only copy of that change;
- a place whose poller is gone (killed mid-task) and whose task is not running here is
  removed (a redelivery of it starts from a fresh worktree anyway);
- what an earlier poller left in the trash is deleted;
- every mirror this worker uses gets `git worktree prune` (the fleet's entries are locked, so
  only entries nobody owns go) and `git gc --auto`.
Nothing here raises: a sweep that fails is logged and tried again later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from poller import git, worktree
from poller.repos import Repo, Repos

SWEEP_EVERY = 60.0


@dataclass
class Swept:
    removed: list[str] = field(default_factory=list)
    branches_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on `path`'s file system."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


async def sweep(
    root: Path,
    repos: Repos,
    base_env: Mapping[str, str],
    *,
    running: Collection[str],
    now: float | None = None,
) -> Swept:
    """One pass over `root`'s places (those of tasks in `running` are left alone)."""
    now = time.time() if now is None else now
    done = Swept()
    trash: list[Path | None] = list(worktree.purge_trash(root))
    expired_branches: list[tuple[Repo, str, str]] = []
    for place in worktree.records(root):
        if place.task_id in running:
            continue
        expired = place.finished_at is not None and place.finished_at + place.retain_s <= now
        orphan = place.finished_at is None and not place.owner_alive()
        if not (expired or orphan):
            continue
        # Checked and taken away with no await in between: no step of this poller sees it.
        trash.append(worktree.detach(root, place.task_id))
        done.removed.append(place.task_id)
        repo = repos.repos.get(place.repo) if place.repo else None
        if expired and place.pushed and place.branch and place.base and repo is not None:
            expired_branches.append((repo, place.branch, place.task_id))
    for moved in trash:
        await worktree.purge(moved)
    for repo, branch, _ in expired_branches:
        try:
            await _delete_branch(repo, base_env, branch)
            done.branches_deleted.append(branch)
        except Exception as e:
            done.errors.append(f"{repo.name}: deleting {branch}: {git.why(e)}")
    for repo in repos.repos.values():
        await _tidy(repo, base_env, done)
    return done


async def _delete_branch(repo: Repo, base_env: Mapping[str, str], branch: str) -> None:
    env = git.environment(base_env, repo)
    await git.run(repo.mirror, ["update-ref", "-d", f"refs/heads/{branch}"], env)


async def _tidy(repo: Repo, base_env: Mapping[str, str], done: Swept) -> None:
    if not repo.mirror.is_dir():
        return
    env = git.environment(base_env, repo)
    for args in (["worktree", "prune"], ["gc", "--auto", "--quiet"]):
        try:
            await git.run(repo.mirror, args, env, timeout=git.REMOTE_TIMEOUT)
        except Exception as e:
            done.errors.append(f"{repo.name}: git {args[0]}: {git.why(e)}")
