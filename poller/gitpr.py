"""After a completed task: commit the work dir's changes on `af/<task_id>`, push, open a PR.

Failures here never fail the task (the LLM's work is done and paid for); they are reported in
the result's `git.error`. The work dir goes back to the branch it was on, so the next task does
not start on top of this one's branch.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

GIT_TIMEOUT = 120.0


class GitError(Exception):
    pass


async def _git(cwd: Path, *args: str, timeout: float = GIT_TIMEOUT) -> str:
    return await _run(cwd, ["git", *args], timeout)


async def _run(cwd: Path, argv: list[str], timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"{argv[0]} {argv[1]}: timed out after {timeout:.0f}s") from None
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise GitError(f"{' '.join(argv[:2])} failed ({proc.returncode}): {text[-500:]}")
    return text


async def is_repo_with_changes(work_dir: Path) -> bool:
    if not (work_dir / ".git").exists():
        return False
    try:
        return bool(await _git(work_dir, "status", "--porcelain"))
    except GitError:
        return False


async def commit_and_push(work_dir: Path, task_id: str, remote: str, title: str) -> dict[str, Any]:
    """Branch, commit, push and (when `gh` exists) open a PR; returns the result's `git` field."""
    branch = f"af/{task_id}"
    info: dict[str, Any] = {"branch": branch}
    original = ""
    try:
        original = await _git(work_dir, "rev-parse", "--abbrev-ref", "HEAD")
        await _git(work_dir, "checkout", "-B", branch)
        await _git(work_dir, "add", "-A")
        await _git(
            work_dir,
            "-c",
            "user.name=fleet-poller",
            "-c",
            "user.email=fleet-poller@localhost",
            "commit",
            "--no-verify",
            "-m",
            f"af: task {task_id}\n\n{title}",
        )
        info["commit"] = await _git(work_dir, "rev-parse", "HEAD")
        await _git(work_dir, "push", "--force", remote, f"{branch}:refs/heads/{branch}")
        info["pushed"] = True
        if shutil.which("gh"):
            info["pr_url"] = await _run(
                work_dir,
                ["gh", "pr", "create", "--head", branch, "--title", title, "--body", title],
                GIT_TIMEOUT,
            )
    except (GitError, OSError) as e:
        info["error"] = str(e)
    finally:
        if original and original != "HEAD":
            try:
                await _git(work_dir, "checkout", original)
            except GitError as e:
                info.setdefault("error", str(e))
    return info
