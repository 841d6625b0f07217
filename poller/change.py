"""What the agent changed in its worktree: committed on the task's branch, and described for
the result (files, line counts, a patch cut to a size that fits a result).

Everything the agent changed is committed, new files included and ignored files excluded
(`git add -A`), except the files the repository's `copy` placed there (the operator's, often
secrets: never committed). The commit's author and committer are the worker,
`<worker_id> <worker_id@fleet.invalid>`; the branch is `af/<task_id>/<worker_id>`, created
in the mirror only if it does not exist (a branch there with another commit is an error).
A file larger than MAX_FILE_BYTES is refused before git reads it.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poller import git

# GitHub refuses files over 100 MiB; a larger file is almost surely not meant to be committed.
MAX_FILE_BYTES = 100 * 1024 * 1024
# The patch in a result: cut at a file boundary at this size (the change is whole on the
# branch). With the largest OUTPUT_CAP (512 KiB) the result still fits under MAX_RESULT_BYTES
# after the output is cut, which Result.encode does first.
PATCH_CAP = 256 * 1024
MAX_FILES = 1000  # files listed in a result; counts cover them all
TITLE_CHARS = 72
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_STATUS = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type-changed",
}


class CommitError(git.GitError):
    """The change could not be committed; says why."""


def branch_name(task_id: str, worker_id: str) -> str:
    return f"af/{task_id}/{worker_id}"


def title_of(instructions: str) -> str:
    """A commit subject and pull request title from the task's first non-blank line:
    control characters as spaces, lone surrogates as `?`, at most TITLE_CHARS characters."""
    first = next((line for line in instructions.splitlines() if line.strip()), "")
    text = _CONTROL.sub(" ", first).strip()
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:TITLE_CHARS].strip() or "task"


def author_env(worker_id: str) -> dict[str, str]:
    email = f"{worker_id}@fleet.invalid"
    return {
        "GIT_AUTHOR_NAME": worker_id,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": worker_id,
        "GIT_COMMITTER_EMAIL": email,
    }


@dataclass(frozen=True)
class Committed:
    head: str
    branch: str


async def commit(
    wt: Path,
    env: Mapping[str, str],
    *,
    task_id: str,
    worker_id: str,
    title: str,
    copied: Sequence[str] = (),
) -> Committed | None:
    """Commit the worktree's changes and create the task's branch; None when nothing
    changed. CommitError (or GitError) when it cannot."""
    _refuse_huge(wt, await _changed_paths(wt, env))
    await git.run(wt, ["add", "-A"], env)
    if copied:
        await git.run(wt, ["reset", "-q", "--", *(f":(literal){c}" for c in copied)], env)
    staged = await git.run(wt, ["diff", "--cached", "--name-only", "-z"], env)
    if not staged:
        return None
    message = f"af: task {task_id}\n\n{title}\n"
    await git.run(
        wt,
        ["commit", "--quiet", "--no-verify", "--no-gpg-sign", "-F", "-"],
        {**env, **author_env(worker_id)},
        stdin=message.encode(),
    )
    head = (await git.run(wt, ["rev-parse", "HEAD"], env)).strip()
    branch = branch_name(task_id, worker_id)
    await create_branch(wt, env, branch, head)
    return Committed(head, branch)


async def create_branch(wt: Path, env: Mapping[str, str], branch: str, head: str) -> None:
    """`refs/heads/<branch>` at `head`, only if absent (or already there: a retry)."""
    ref = f"refs/heads/{branch}"
    try:
        await git.run(wt, ["update-ref", "--create-reflog", ref, head, ""], env)
        return
    except git.GitError:
        there = await _ref(wt, env, ref)
        if there == head:
            return
        if there is None:
            raise
    raise CommitError(
        f"branch {branch} already exists in the mirror at {there[:12]} (another run of this "
        f"task?); not overwritten. The change is commit {head}"
    )


async def _ref(wt: Path, env: Mapping[str, str], ref: str) -> str | None:
    try:
        return (await git.run(wt, ["rev-parse", "--verify", "--quiet", ref], env)).strip() or None
    except git.GitError:
        return None


async def _changed_paths(wt: Path, env: Mapping[str, str]) -> list[str]:
    out = await git.run_bytes(
        wt, ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"], env
    )
    paths = []
    for entry in out.split(b"\0"):
        if len(entry) > 3:
            paths.append(os.fsdecode(entry[3:]))
    return paths


def _refuse_huge(wt: Path, paths: Sequence[str]) -> None:
    for rel in paths:
        try:
            size = os.lstat(wt / rel).st_size
        except OSError:
            continue  # deleted
        if size > MAX_FILE_BYTES:
            raise CommitError(
                f"{rel} is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a commit may hold "
                "(ignore it in .gitignore, or keep it out of the worktree)"
            )


async def describe(wt: Path, env: Mapping[str, str], base: str, head: str) -> dict[str, Any]:
    """The change from `base` to `head`: files, insertions, deletions, the patch (cut at
    PATCH_CAP on a file boundary; `patch_truncated` then)."""
    if base == head:
        return {
            "files": [],
            "insertions": 0,
            "deletions": 0,
            "patch": "",
            "patch_truncated": False,
        }
    diff = ["diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", base, head]
    numstat = await git.run_bytes(wt, [*diff[:-2], "--numstat", "-z", base, head], env)
    names = await git.run_bytes(wt, [*diff[:-2], "--name-status", "-z", base, head], env)
    files = _files(numstat, names)
    patch = await git.run_bytes(wt, [*diff[:-2], "--binary", "--full-index", base, head], env)
    cut, truncated = _cut(patch, PATCH_CAP)
    out: dict[str, Any] = {
        "files": files[:MAX_FILES],
        "insertions": sum(f["insertions"] for f in files),
        "deletions": sum(f["deletions"] for f in files),
        "patch_truncated": truncated,
    }
    if len(files) > MAX_FILES:
        out["files_truncated"] = True
    try:
        out["patch"] = cut.decode("utf-8")
    except UnicodeDecodeError:  # a text file in another encoding: base64 keeps it appliable
        out["patch"] = base64.b64encode(cut).decode()
        out["patch_encoding"] = "base64"
    return out


def _files(numstat: bytes, names: bytes) -> list[dict[str, Any]]:
    """Join `--numstat -z` and `--name-status -z` (the same diff, the same order)."""
    counts: list[tuple[int | None, int | None]] = []
    fields = numstat.split(b"\0")
    i = 0
    while i < len(fields) and fields[i]:
        added, deleted, path = fields[i].split(b"\t", 2)
        counts.append((_int(added), _int(deleted)))
        i += 3 if path == b"" else 1  # a rename: its two paths follow
    out: list[dict[str, Any]] = []
    parts = names.split(b"\0")
    j = 0
    while j < len(parts) and parts[j]:
        code = parts[j].decode()
        kind = code[:1]
        if kind in ("R", "C"):
            old, new = os.fsdecode(parts[j + 1]), os.fsdecode(parts[j + 2])
            j += 3
        else:
            old, new = None, os.fsdecode(parts[j + 1])
            j += 2
        ins, dels = counts[len(out)] if len(out) < len(counts) else (0, 0)
        entry: dict[str, Any] = {
            "path": new,
            "status": _STATUS.get(kind, kind),
            "insertions": ins or 0,
            "deletions": dels or 0,
        }
        if old is not None:
            entry["from"] = old
        if ins is None:
            entry["binary"] = True
        out.append(entry)
    return out


def _int(text: bytes) -> int | None:
    return None if text == b"-" else int(text)


def _cut(patch: bytes, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of whole file diffs (never half a file's: that would not apply)."""
    if len(patch) <= cap:
        return patch, False
    starts = [m.start() + 1 for m in re.finditer(rb"\ndiff --git ", patch)]
    keep = 0
    for start in starts:
        if start > cap:
            break
        keep = start
    return patch[:keep], True
