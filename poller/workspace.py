"""A task's workspace, from before its CLI to after: the steps the delivery flow calls.

`open` (before the CLI): the task's repository (or none: a fresh empty directory), the disk
floor, its commit brought into the mirror, a fresh worktree detached there, the `copy` files,
`setup`. `close` (after the CLI): commit, the change described, `check`, push, pull request:
the result's `code` object (docs/messages.md). `leave` (after the result is stored): the
place marked finished and kept for its repository's `retain` (an empty directory, or
`retain: 0`, is removed at once), and now and then the retention sweep.

Each step says how it ended as data, and nothing here raises but a cancellation: every git
step catches every exception (git's, the file system's, ours) and turns it into a result
that says why. Nothing loops: each step is tried once per delivery. How the flow maps them:
`Refuse` is a `rejected` result (the task names something it may not: nothing runs),
`Later` a nak (the repository's remote is away: the next delivery tries again), `Unusable`
a `failed` result without the CLI (setup failed, no disk).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poller import change, forge, git, mirror, retention, steps, worktree
from poller.config import Config
from poller.logs import Logger
from poller.messages import Task
from poller.repos import Repo, RepoError


@dataclass(frozen=True)
class Refuse:
    reason: str


@dataclass(frozen=True)
class Later:
    reason: str


@dataclass(frozen=True)
class Unusable:
    reason: str
    code: dict[str, Any] | None


@dataclass
class Workspace:
    """Where one task runs, and what is known about its code so far."""

    place: worktree.Place
    repo: Repo | None = None
    base: str | None = None
    ref: str | None = None  # as the task named it
    setup: steps.StepOutcome | None = None
    code: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.place.dir


@dataclass(frozen=True)
class Closed:
    """After the CLI: the result's `code` (None without a repository), and why the task
    failed when its change could not be kept (None: it ends as its CLI did)."""

    code: dict[str, Any] | None
    failed: str | None = None


def repo_of(cfg: Config, task: Task) -> Repo | None:
    """The task's repository; RepoError when the worker has no such repository."""
    repo = cfg.repos.named(task.repo)
    if repo is None and (task.ref is not None or task.base is not None):
        raise RepoError("the task names a ref or base, but this worker has no repository")
    return repo


class Workspaces:
    """The workspaces of one worker's tasks; shared by all its concurrent slots."""

    def __init__(
        self,
        cfg: Config,
        log: Logger,
        env: Mapping[str, str],
        child_env: Mapping[str, str],
        state_dir: Path | None,
    ) -> None:
        self.cfg, self.log, self.env, self.child_env = cfg, log, env, child_env
        self.state_dir = state_dir
        self.root = cfg.worktrees
        self.last_sweep = 0.0

    # -- before the CLI -------------------------------------------------------------------

    async def open(
        self, task: Task, running: Collection[str]
    ) -> Workspace | Refuse | Later | Unusable:
        try:
            repo = repo_of(self.cfg, task)
        except RepoError as e:
            return Refuse(str(e))
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            if repo is None:
                return Workspace(await worktree.empty_dir(self.root, task.task_id))
        except Exception as e:
            return Later(f"cannot make the task's directory under {self.root}: {git.why(e)}")
        low = await self._short_of_space(running)
        if low is not None:
            return Unusable(low, _empty_code(repo, task.base) | {"phase": "worktree", "error": low})
        try:
            base = await mirror.bring(repo, self.env, ref=task.ref, base=task.base)
        except mirror.BaseMissing as e:
            return Refuse(str(e))
        except Exception as e:
            return Later(f"fetching {repo.name}: {git.why(e)}")
        try:
            place = await worktree.add(self.root, task.task_id, repo, base, self.env)
        except Exception as e:
            await worktree.remove(self.root, task.task_id)
            why = f"cannot add a worktree of {repo.name}: {git.why(e)}"
            return Unusable(why, _empty_code(repo, base) | {"phase": "worktree", "error": why})
        ws = Workspace(place, repo, base, task.ref, code=_empty_code(repo, base))
        failed = self._copy(ws)
        if failed is None and repo.setup:
            ws.setup = await self._step(repo.setup, ws.dir, repo.setup_timeout_s)
            ws.code["setup"] = ws.setup.as_json()
            if not ws.setup.passed:
                failed = ("setup", f"setup {_argv(repo.setup)} failed ({_ended(ws.setup)})")
        if failed is not None:
            phase, why = failed
            ws.code |= {"phase": phase, "error": why}
            await self.leave(ws, running)
            return Unusable(why, ws.code)
        return ws

    async def _short_of_space(self, running: Collection[str]) -> str | None:
        floor = self.cfg.repos.min_free_bytes
        free = retention.free_bytes(self.root)
        if free is None or free >= floor:
            return None
        await self.sweep(running, force=True)
        free = retention.free_bytes(self.root)
        if free is None or free >= floor:
            return None
        return (
            f"only {free:,} bytes free under {self.root}, below min_free_bytes ({floor:,}): "
            "no new worktree until space is freed (finished worktrees are removed after "
            "their repository's retain)"
        )

    def _copy(self, ws: Workspace) -> tuple[str, str] | None:
        """The repository's `copy` files into the new worktree; (phase, why) if one fails."""
        assert ws.repo is not None
        for item in ws.repo.copy:
            target = ws.dir / item.to
            try:
                if not target.parent.resolve().is_relative_to(ws.dir.resolve()):
                    why = f"copy {item.to}: leaves the worktree (a symlink in the repository?)"
                    return "copy", why
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                shutil.copyfile(item.source, target)
                target.chmod(0o600)
            except Exception as e:
                return "copy", f"copy {item.source} to {item.to}: {git.why(e)}"
        return None

    async def _step(self, argv: tuple[str, ...], cwd: Path, timeout: float) -> steps.StepOutcome:
        return await steps.run(
            argv,
            cwd,
            self.child_env,
            timeout=timeout,
            grace=self.cfg.kill_grace,
            state_dir=self.state_dir,
        )

    # -- after the CLI --------------------------------------------------------------------

    async def close(self, ws: Workspace, task: Task, status: str) -> Closed:
        """Commit and describe what the agent changed, `check` it (after a completed CLI),
        then push and open the pull request. The commit comes before the check, so what the
        check writes (caches, reports, a formatter's rewrite) is never taken for the agent's."""
        repo = ws.repo
        if repo is None or ws.base is None:
            return Closed(None)
        code = ws.code
        env = git.environment(self.env, repo)
        try:
            done = await change.commit(
                ws.dir,
                env,
                task_id=task.task_id,
                worker_id=self.cfg.worker_id,
                title=change.title_of(task.instructions),
                copied=[c.to for c in repo.copy],
            )
        except Exception as e:
            why = f"the change could not be committed: {git.why(e)}"
            code |= {"phase": "commit", "error": why}
            return Closed(code, why)
        if done is not None:
            code |= {"head": done.head, "branch": done.branch}
            ws.place.branch = done.branch
        try:
            code |= await change.describe(ws.dir, env, ws.base, code["head"])
        except Exception as e:  # the change is on its branch; only its description is missing
            why = f"the change could not be described: {git.why(e)}"
            code |= {"phase": "describe", "error": why}
        if repo.check and status == "completed":
            code["check"] = (await self._step(repo.check, ws.dir, repo.check_timeout_s)).as_json()
        if done is not None and repo.push:
            await self._publish(ws, task, done)
        return Closed(code)

    async def _publish(self, ws: Workspace, task: Task, done: change.Committed) -> None:
        repo, code = ws.repo, ws.code
        assert repo is not None
        try:
            await mirror.push(repo, self.env, done.head, done.branch)
        except Exception as e:
            code |= {"phase": "push", "error": f"push: {git.why(e)}"}
            return
        code["pushed"] = ws.place.pushed = True
        if repo.pull_request is None:
            return
        try:
            target = await self._target(ws)
            if target is None:
                raise forge.ForgeError("no branch to target: set pull_request.base")
            code["pull_request_url"] = await forge.open_pull_request(
                repo.pull_request,
                git.token(repo),
                head=done.branch,
                base=target,
                title=change.title_of(task.instructions),
                body=f"Task {task.task_id}, by worker {self.cfg.worker_id}.",
            )
        except Exception as e:
            code |= {"phase": "pull_request", "error": f"pull request: {git.why(e)}"}

    async def _target(self, ws: Workspace) -> str | None:
        """The branch a pull request targets: pull_request.base, else the branch the task's
        ref names, else the repository's ref, else the remote's default branch."""
        repo = ws.repo
        assert repo is not None and repo.pull_request is not None
        for named in (repo.pull_request.base, ws.ref, repo.ref):
            branch = _branch(named) if named else None
            if branch:
                return branch
        return await mirror.remote_head(repo, self.env)

    # -- after the result -----------------------------------------------------------------

    async def leave(self, ws: Workspace, running: Collection[str], *, keep: bool = True) -> None:
        """The task is done: keep its worktree for `retain`, or remove it now (at once too
        when no result was stored, `keep=False`: a redelivery starts afresh anyway)."""
        try:
            worktree.finished(self.root, ws.place, ws.repo)
            if ws.place.retain_s <= 0 or not keep:
                await worktree.remove(self.root, ws.place.task_id)
        except Exception as e:
            self.log.warning("workspace_leave_failed", task_id=ws.place.task_id, error=git.why(e))
        await self.sweep(running)

    async def sweep(self, running: Collection[str], *, force: bool = False) -> None:
        """The retention sweep, at most every SWEEP_EVERY seconds unless forced."""
        now = time.monotonic()
        if not force and now - self.last_sweep < retention.SWEEP_EVERY:
            return
        self.last_sweep = now
        try:
            done = await retention.sweep(self.root, self.cfg.repos, self.env, running=running)
        except Exception as e:
            self.log.warning("sweep_failed", error=git.why(e))
            return
        if done.removed or done.branches_deleted or done.errors:
            self.log.info(
                "swept",
                removed=done.removed,
                branches_deleted=done.branches_deleted,
                errors=done.errors,
            )


def _empty_code(repo: Repo, base: str | None) -> dict[str, Any]:
    return {
        "repo": repo.name,
        "base": base,
        "head": base,
        "branch": None,
        "pushed": False,
        "pull_request_url": None,
        "files": [],
        "insertions": 0,
        "deletions": 0,
        "patch": "",
        "patch_truncated": False,
        "check": None,
        "setup": None,
    }


def _branch(ref: str) -> str | None:
    """The branch a task's ref names (a pull request's target), None for a tag or commit."""
    if ref.startswith("refs/tags/") or (
        len(ref) in (40, 64) and all(c in "0123456789abcdef" for c in ref)
    ):
        return None
    return ref.removeprefix("refs/heads/")


def _argv(argv: tuple[str, ...]) -> str:
    return " ".join(argv)[:200]


def _ended(out: steps.StepOutcome) -> str:
    if out.timed_out:
        return "timed out"
    if out.exit_code is None:
        return "could not start"
    return f"exit {out.exit_code}"
