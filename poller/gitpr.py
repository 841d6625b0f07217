"""After a completed task: commit the work dir's changes on `af/<task_id>`, push, open a PR.

Failures here never fail the task (the LLM's work is done and paid for); they are reported in
the result's `git.error`, and nothing raises: every exception, of git or of ours (a NUL in a
commit message is a `ValueError` of the process spawn), is caught. Whatever happened, the
work dir goes back to where it was (its branch, or its commit when detached) with nothing of
this task left in it, so the next task does not start on top of this one's branch or changes:
a commit that failed leaves the changes neither staged nor in the tree.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

GIT_TIMEOUT = 120.0
TITLE_CHARS = 72
# Control characters (NUL included) cannot go into argv or read well in a commit subject.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class GitError(Exception):
    pass


def title_of(instructions: str) -> str:
    """A commit subject and PR title from the task's first non-blank line: control
    characters as spaces, lone surrogates as `?`, at most TITLE_CHARS characters."""
    first = next((line for line in instructions.splitlines() if line.strip()), "")
    text = _CONTROL.sub(" ", first).strip()
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:TITLE_CHARS].strip() or "task"


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


def _why(e: Exception) -> str:
    return str(e) if isinstance(e, GitError | OSError) else f"{type(e).__name__}: {e}"


async def is_repo_with_changes(work_dir: Path) -> bool:
    if not (work_dir / ".git").exists():
        return False
    try:
        return bool(await _git(work_dir, "status", "--porcelain"))
    except Exception:
        return False


async def _where(work_dir: Path) -> list[str]:
    """What `git checkout` takes to come back here: the branch, or the commit if detached."""
    branch = await _git(work_dir, "rev-parse", "--abbrev-ref", "HEAD")
    if branch != "HEAD":
        return [branch]
    return ["--detach", await _git(work_dir, "rev-parse", "HEAD")]


async def commit_and_push(
    work_dir: Path, task_id: str, remote: str, instructions: str
) -> dict[str, Any]:
    """Branch, commit, push and (when `gh` exists) open a PR titled by the instructions'
    first line; returns the result's `git` field. Never raises; the work dir is restored
    whatever happens."""
    branch = f"af/{task_id}"
    info: dict[str, Any] = {"branch": branch}
    title = title_of(instructions)
    back: list[str] = []
    committed = False
    try:
        back = await _where(work_dir)
        await _git(work_dir, "checkout", "-q", "-B", branch)
        await _git(work_dir, "add", "-A")
        await _git(
            work_dir,
            "-c",
            "user.name=fleet-poller",
            "-c",
            "user.email=fleet-poller@localhost",
            "commit",
            "-q",
            "--no-verify",
            "-m",
            f"af: task {task_id}\n\n{title}",
        )
        committed = True
        info["commit"] = await _git(work_dir, "rev-parse", "HEAD")
        await _git(work_dir, "push", "--force", remote, f"{branch}:refs/heads/{branch}")
        info["pushed"] = True
        if shutil.which("gh"):
            info["pr_url"] = await _run(
                work_dir,
                ["gh", "pr", "create", "--head", branch, "--title", title, "--body", title],
                GIT_TIMEOUT,
            )
    except Exception as e:
        info["error"] = _why(e)
    finally:
        if back:
            problem = await _restore(work_dir, back, discard=not committed)
            if problem:
                info["error"] = f"{info['error']}; {problem}" if "error" in info else problem
    return info


async def _restore(work_dir: Path, back: list[str], *, discard: bool) -> str | None:
    """Back to `back`; when the changes were not committed, without them (reported)."""
    try:
        if discard:
            await _git(work_dir, "reset", "-q", "--hard")
            await _git(work_dir, "clean", "-q", "-f", "-d")
        await _git(work_dir, "checkout", "-q", *back)
    except Exception as e:
        return f"the work dir could not be restored: {_why(e)}"
    if discard:
        return "the task's changes were not committed and were removed from the work dir"
    return None
