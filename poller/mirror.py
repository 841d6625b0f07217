"""The host's bare mirror of a repository: bring a task's commit into it, push a branch from it.

One mirror serves every worker on the host that uses the repository (docs/poller.md): fetches
into it are serialised by an `flock` on `<mirror>/fleet-fetch.lock`, which fleetctl's own
refresh takes too. A task whose commit is already in the mirror fetches nothing, so concurrent
tasks from one fan-out share the first one's fetch. The remote's branches are kept under
`refs/remotes/origin/`, tags under `refs/tags/`; the tasks' branches (`refs/heads/af/...`)
are never touched by a fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from poller import git
from poller.repos import Repo

LOCK_NAME = "fleet-fetch.lock"
LOCK_WAIT = 900.0  # longest a task waits for another's fetch
REFSPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")


class BaseMissing(git.StepError):
    """The task's commit or ref is not in the repository (a `rejected` task)."""


@contextlib.asynccontextmanager
async def fetch_lock(mirror: Path, wait: float = LOCK_WAIT) -> AsyncIterator[None]:
    """The mirror's fetch lock (an flock; released when its file closes, also on a crash)."""
    path = mirror / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o660)  # the unit's umask is 0077: the group shares the lock
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise git.GitError(f"{path}: still locked after {wait:.0f}s") from None
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)


async def has_commit(repo: Repo, env: Mapping[str, str], commit: str) -> bool:
    try:
        await git.run(repo.mirror, ["cat-file", "-e", f"{commit}^{{commit}}"], env)
        return True
    except git.GitError:
        return False


async def fetch(repo: Repo, base_env: Mapping[str, str]) -> None:
    """Every branch and tag of the remote into the mirror (under its lock)."""
    env = git.environment(base_env, repo, remote=True)
    args = ["fetch", "--quiet", "--no-tags", "--prune", "--no-write-fetch-head", "--", repo.url]
    await git.run(repo.mirror, [*args, *REFSPECS], env, timeout=git.REMOTE_TIMEOUT)


async def bring(
    repo: Repo, base_env: Mapping[str, str], *, ref: str | None, base: str | None
) -> str:
    """The task's commit, in the mirror: `base` when the publisher resolved one (fetched only
    if missing), else the tip of `ref` (else the repository's `ref`, else the remote's HEAD)
    after a fetch. BaseMissing when it is not there after fetching."""
    env = git.environment(base_env, repo)
    if base is not None and await has_commit(repo, env, base):
        return base
    async with fetch_lock(repo.mirror):
        if base is None or not await has_commit(repo, env, base):
            await fetch(repo, base_env)
    if base is not None:
        if not await has_commit(repo, env, base):
            raise BaseMissing(f"commit {base} is not in {repo.name} ({repo.url})")
        return base
    name = ref or repo.ref or await remote_head(repo, base_env)
    if name is None:
        raise BaseMissing(f"{repo.name}: the remote has no default branch; name a ref")
    commit = await resolve(repo, env, name)
    if commit is None:
        raise BaseMissing(f"ref {name!r} is not in {repo.name} ({repo.url})")
    return commit


async def resolve(repo: Repo, env: Mapping[str, str], ref: str) -> str | None:
    """A ref as the remote names it (branch, tag, full ref or commit id), in the mirror."""
    for candidate in _candidates(ref):
        try:
            out = await git.run(
                repo.mirror, ["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], env
            )
        except git.GitError:
            continue
        if out:
            return out.split()[0]
    return None


def _candidates(ref: str) -> list[str]:
    if ref.startswith("refs/heads/"):
        return [f"refs/remotes/origin/{ref.removeprefix('refs/heads/')}"]
    if ref.startswith("refs/"):
        return [ref]
    return [f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref]


async def remote_head(repo: Repo, base_env: Mapping[str, str]) -> str | None:
    """The remote's default branch (`ls-remote --symref HEAD`), None if it has none."""
    env = git.environment(base_env, repo, remote=True)
    try:
        out = await git.run(
            repo.mirror, ["ls-remote", "--symref", "--", repo.url, "HEAD"], env, timeout=60
        )
    except git.GitError:
        return None
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line.removeprefix("ref: refs/heads/").removesuffix("\tHEAD")
    return None


async def remote_branch(repo: Repo, base_env: Mapping[str, str], branch: str) -> str | None:
    """The commit the remote's `branch` points at, None when it has no such branch."""
    env = git.environment(base_env, repo, remote=True)
    out = await git.run(
        repo.mirror,
        ["ls-remote", "--", repo.url, f"refs/heads/{branch}"],
        env,
        timeout=git.REMOTE_TIMEOUT,
    )
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == f"refs/heads/{branch}":
            return sha
    return None


async def push(repo: Repo, base_env: Mapping[str, str], commit: str, branch: str) -> None:
    """Create `branch` on the remote at `commit`; never forced. A branch already there with
    other content is an error (a retry that finds its own commit there is done)."""
    there = await remote_branch(repo, base_env, branch)
    if there == commit:
        return
    if there is not None:
        raise git.GitError(
            f"the remote already has a branch {branch} at {there[:12]} (not this task's "
            f"{commit[:12]}); it was not overwritten"
        )
    env = git.environment(base_env, repo, remote=True)
    await git.run(
        repo.mirror,
        ["push", "--quiet", "--no-verify", "--", repo.url, f"{commit}:refs/heads/{branch}"],
        env,
        timeout=git.REMOTE_TIMEOUT,
    )
