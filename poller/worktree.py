"""Each task's own directory: a git worktree of its repository's mirror, or an empty directory.

`<worktrees>/<task_id>` (docs/poller.md). A worktree is added detached at the task's base and
locked (`git worktree add --lock`), so that `git worktree prune` run by another worker sharing
the mirror, which may not see into this worker's directory, never drops it. A record of each
place is kept beside it, in `<worktrees>/.fleet/<task_id>.json`: which repository and mirror,
the worktree's entry in the mirror (`<mirror>/worktrees/<name>`), the poller that made it,
and once the task is done, when, its branch and whether it was pushed. The retention sweep
(poller/retention.py) reads these records. Removing a place removes the directory and the
mirror's entry for it; the task's commits stay on its branch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from poller import git, runner
from poller.repos import Repo

RECORDS = ".fleet"


@dataclass
class Place:
    """Where one task runs, and what the sweep needs to know about it later."""

    task_id: str
    path: str
    repo: str | None = None
    mirror: str | None = None
    admin: str | None = None  # the worktree's entry in the mirror
    base: str | None = None
    poller_pid: int | None = None
    poller_start: str | None = None
    finished_at: float | None = None
    retain_s: float = 0.0
    branch: str | None = None
    pushed: bool = False

    @property
    def dir(self) -> Path:
        return Path(self.path)

    def owner_alive(self) -> bool:
        """Is the poller that made it still running (the same process, not a reused pid)?"""
        if self.poller_pid is None or self.poller_start is None:
            return False
        return runner.start_time(self.poller_pid) == self.poller_start


def records_dir(root: Path) -> Path:
    return root / RECORDS


def record_path(root: Path, task_id: str) -> Path:
    return records_dir(root) / f"{task_id}.json"


def save(root: Path, place: Place) -> None:
    """Written atomically: a crash leaves the old record or the new one."""
    path = record_path(root, place.task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(place)))
    tmp.replace(path)


def load(root: Path, task_id: str) -> Place | None:
    try:
        data: Any = json.loads(record_path(root, task_id).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    known = set(Place.__dataclass_fields__)
    try:
        return Place(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


def records(root: Path) -> list[Place]:
    """Every place recorded under `root` (unreadable records are skipped)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in sorted(records_dir(root).glob("*.json")):
            place = load(root, entry.stem)
            if place is not None:
                found.append(place)
    return found


def _mine(task_id: str, path: Path) -> Place:
    pid = os.getpid()
    return Place(task_id, str(path), poller_pid=pid, poller_start=runner.start_time(pid))


async def empty_dir(root: Path, task_id: str) -> Place:
    """A fresh empty directory for a task without a repository."""
    path = root / task_id
    await remove(root, task_id)
    place = _mine(task_id, path)
    save(root, place)
    path.mkdir(mode=0o700)
    return place


async def add(
    root: Path, task_id: str, repo: Repo, base: str, base_env: Mapping[str, str]
) -> Place:
    """A fresh worktree of `repo`'s mirror, detached at `base` and locked. Whatever an
    earlier run of this task left here (a killed poller) is removed first."""
    path = root / task_id
    await remove(root, task_id)
    place = _mine(task_id, path)
    place.repo, place.mirror, place.base = repo.name, str(repo.mirror), base
    save(root, place)  # before the worktree exists: a crash in between leaves it findable
    env = git.environment(base_env, repo)
    reason = f"fleet task {task_id} (poller {os.getpid()})"
    await git.run(
        repo.mirror,
        ["worktree", "add", "--quiet", "--detach", "--lock", "--reason", reason, str(path), base],
        env,
        timeout=git.REMOTE_TIMEOUT,
    )
    gitdir = (path / ".git").read_text().strip()
    place.admin = gitdir.removeprefix("gitdir:").strip()
    save(root, place)
    return place


def detach(root: Path, task_id: str) -> Path | None:
    """Take the task's place away at once, without waiting on the disk: its directory is
    renamed into `<root>/.fleet/trash/` (returned, for `purge`), its entry in the mirror and
    its record removed. Never raises, never awaits (so no other step of this poller sees it
    half gone). The directory is always `<root>/<task_id>`, whatever the record says (the
    agent could write the record), and an entry is only removed from under its mirror's
    `worktrees/`."""
    place = load(root, task_id)
    moved: Path | None = None
    path = root / task_id
    with contextlib.suppress(OSError):
        if path.exists() or path.is_symlink():
            trash = records_dir(root) / "trash"
            trash.mkdir(parents=True, exist_ok=True)
            moved = trash / f"{task_id}-{os.getpid()}-{time.monotonic_ns()}"
            path.rename(moved)
    if place and place.admin and place.mirror and _inside(Path(place.admin), Path(place.mirror)):
        with contextlib.suppress(Exception):
            _rmtree(Path(place.admin))
    with contextlib.suppress(OSError):
        record_path(root, task_id).unlink(missing_ok=True)
    return moved


async def purge(moved: Path | None) -> None:
    """Delete what `detach` took away, in a thread (a worktree with its dependencies can be
    large). Never raises."""
    if moved is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.to_thread(_rmtree, moved)


async def remove(root: Path, task_id: str) -> None:
    await purge(detach(root, task_id))


def purge_trash(root: Path) -> list[Path]:
    """What earlier pollers left in the trash (a crash between detach and purge)."""
    with contextlib.suppress(OSError):
        return list((records_dir(root) / "trash").iterdir())
    return []


def _inside(path: Path, parent: Path) -> bool:
    try:
        return path.resolve().is_relative_to(parent.resolve() / "worktrees")
    except OSError:
        return False


def _rmtree(path: Path) -> None:
    """Remove a tree even where the agent took away write permission on a directory."""

    def retry(func: Any, name: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            Path(name).parent.chmod(0o700)
            Path(name).chmod(0o700)
        func(name)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=retry)


def finished(root: Path, place: Place, repo: Repo | None) -> None:
    """Mark the task done: kept `retain_s` from now (a directory without a repository: 0)."""
    place.finished_at = time.time()
    place.retain_s = repo.retain_s if repo is not None else 0.0
    save(root, place)
