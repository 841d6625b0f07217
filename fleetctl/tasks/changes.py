"""A worker's change, as its result's `code` carries it: its patch for `git apply`, two
workers' patches compared, and the patch applied to a local checkout.

`fleetctl results TASK --patch WORKER`, `--diff A B` and `--apply WORKER [--to DIR]`, and
the client's `patch()`, `apply()`, are built on these. Applying refuses a checkout with
uncommitted changes or at another commit than the change's base, saying the command that
fixes it; nothing is changed then. A patch the worker cut (`patch_truncated`) is refused too:
the whole change is on its branch, which the error names.
"""

from __future__ import annotations

import base64
import difflib
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetctl.tasks.messages import Result

GIT_TIMEOUT = 120.0


class ChangeError(ValueError):
    """The change cannot be shown or applied as asked; `fix` says what to do."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class Change:
    """One worker's change: its result's `code`, and its patch as bytes."""

    worker_id: str
    code: Mapping[str, Any]

    @property
    def patch(self) -> bytes:
        text = str(self.code.get("patch") or "")
        if self.code.get("patch_encoding") == "base64":
            return base64.b64decode(text)
        return text.encode()

    @property
    def base(self) -> str:
        return str(self.code.get("base") or "")

    def where(self, url: str | None = None) -> str:
        """Where the whole change is: its branch, pushed or in the host's mirror."""
        branch = self.code.get("branch")
        if not branch:
            return "it changed nothing"
        if self.code.get("pushed"):
            return (
                f"the whole change is on its branch: git fetch {url or '<repository url>'} {branch}"
            )
        return f"the whole change is on branch {branch} in the host's mirror (it was not pushed)"


def of(results: list[Result], worker_id: str) -> Change:
    """`worker_id`'s change; ChangeError when it has no result or its task had no code."""
    found = next((r for r in results if r.worker_id == worker_id), None)
    if found is None:
        have = ", ".join(r.worker_id for r in results) or "none"
        raise ChangeError(f"no result from {worker_id} for this task (results from: {have})")
    code = found.body.get("code")
    if not found.final:
        raise ChangeError(f"{worker_id} has no result yet ({found.status})")
    if not isinstance(code, Mapping):
        raise ChangeError(
            f"{worker_id}'s result ({found.status}) carries no change: its task worked on no "
            "repository"
        )
    return Change(worker_id, code)


def whole_patch(change: Change, url: str | None = None) -> bytes:
    """The patch, for `git apply`; ChangeError if the worker had to cut it."""
    if change.code.get("patch_truncated"):
        raise ChangeError(
            f"{change.worker_id}'s patch was cut to fit its result", change.where(url)
        )
    return change.patch


_FILE = re.compile(rb"^diff --git ", re.MULTILINE)


def by_file(patch: bytes) -> dict[str, list[str]]:
    """A patch's sections, by the path they change (`b/` side), as lines."""
    starts = [m.start() for m in _FILE.finditer(patch)]
    out: dict[str, list[str]] = {}
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(patch)
        section = patch[start:end].decode(errors="replace").splitlines()
        head = section[0].removeprefix("diff --git ")
        path = head.split(" b/", 1)[1] if " b/" in head else head
        out[path] = section
    return out


def compare(a: Change, b: Change) -> list[str]:
    """How two workers' changes differ, file by file: a unified diff of their patches'
    sections (`-` lines are only A's, `+` lines only B's); [] when they are the same."""
    pa, pb = by_file(a.patch), by_file(b.patch)
    lines: list[str] = []
    for path in sorted(set(pa) | set(pb)):
        left, right = _hunks(pa.get(path, [])), _hunks(pb.get(path, []))
        if left == right:
            continue
        lines += difflib.unified_diff(
            left,
            right,
            fromfile=f"{a.worker_id}: {path}" + ("" if path in pa else " (not changed)"),
            tofile=f"{b.worker_id}: {path}" + ("" if path in pb else " (not changed)"),
            lineterm="",
        )
    return lines


def compare_in(a: Change, b: Change, checkout: Path) -> list[str]:
    """How two workers' changes differ, as the files they leave: `git diff` from A's result to
    B's (`-` lines are A's, `+` lines B's; [] when they leave the same files). Each result is
    built from its base and its patch in a throwaway index and object store beside the
    checkout's, which must have the base; nothing in the checkout changes. ChangeError (with
    the fix) when it cannot: not a checkout, a base it lacks, a cut patch, one that does not
    apply."""
    where = str(checkout)
    if not checkout.is_dir() or _git(checkout, "rev-parse", "--is-inside-work-tree").returncode:
        raise ChangeError(f"{where} is not a git checkout", "give one with --to DIR")
    common = _git(checkout, "rev-parse", "--git-common-dir").stdout.decode().strip()
    objects = (checkout / common).resolve() / "objects"  # relative to the checkout, or absolute
    with tempfile.TemporaryDirectory(prefix="fleetctl-compare-") as tmp:
        store = Path(tmp) / "objects"
        store.mkdir()
        env = {
            **os.environ,
            "GIT_OBJECT_DIRECTORY": str(store),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects),
        }
        trees = [
            _result_tree(c, checkout, env, Path(tmp) / f"index-{i}") for i, c in enumerate((a, b))
        ]
        done = _git(
            checkout,
            *("diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M"),
            f"--src-prefix={a.worker_id}/",
            f"--dst-prefix={b.worker_id}/",
            *trees,
            env=env,
        )
    if done.returncode != 0:
        raise ChangeError(f"git diff failed: {_last(done)}")
    return done.stdout.decode(errors="replace").splitlines()


def _result_tree(change: Change, checkout: Path, env: dict[str, str], index: Path) -> str:
    """The tree `change` leaves: its base read into `index`, its patch applied there."""
    where, base = str(checkout), change.base
    if _git(checkout, "cat-file", "-e", f"{base}^{{commit}}", env=env).returncode != 0:
        raise ChangeError(
            f"{where} does not have {change.worker_id}'s base {base[:12]}",
            f"git -C {where} fetch",
        )
    patch = whole_patch(change)
    env = {**env, "GIT_INDEX_FILE": str(index)}
    steps: list[tuple[tuple[str, ...], bytes | None]] = [(("read-tree", base), None)]
    if patch:  # an empty patch: the worker changed nothing
        steps.append((("apply", "--cached", "--binary", "-"), patch))
    for args, stdin in steps:
        done = _git(checkout, *args, stdin=stdin, env=env)
        if done.returncode != 0:
            raise ChangeError(f"{change.worker_id}'s change: git {args[0]}: {_last(done)}")
    tree = _git(checkout, "write-tree", env=env)
    if tree.returncode != 0:
        raise ChangeError(f"{change.worker_id}'s change: git write-tree: {_last(tree)}")
    return tree.stdout.decode().strip()


def _last(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def _hunks(section: list[str]) -> list[str]:
    """A file's patch without its header lines (the index line's ids differ by content)."""
    return [x for x in section if not x.startswith(("diff --git ", "index "))]


def _git(
    cwd: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )


def apply(change: Change, to: Path, url: str | None = None) -> None:
    """Apply the change to the checkout at `to` (index and work tree), or ChangeError with
    the fix: not a checkout, uncommitted changes, another commit than the change's base, a
    cut patch, or a patch that does not apply."""
    where = str(to)
    if not to.is_dir() or _git(to, "rev-parse", "--is-inside-work-tree").returncode != 0:
        raise ChangeError(f"{where} is not a git checkout", "give one with --to DIR")
    patch = whole_patch(change, url)
    if not change.code.get("branch"):
        raise ChangeError(f"{change.worker_id} changed nothing: there is nothing to apply")
    dirty = _git(to, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    if dirty:
        raise ChangeError(
            f"{where} has uncommitted changes",
            f"commit or stash them first: git -C {where} stash",
        )
    head = _git(to, "rev-parse", "HEAD").stdout.decode().strip()
    base = change.base
    if head != base:
        have = _git(to, "cat-file", "-e", f"{base}^{{commit}}").returncode == 0
        fetch = "" if have else f"git -C {where} fetch, then "
        raise ChangeError(
            f"{where} is at {head[:12] or 'no commit'}; {change.worker_id}'s change is against "
            f"{base[:12]}",
            f"{fetch}git -C {where} checkout --detach {base}",
        )
    done = _git(to, "apply", "--index", "--binary", "-", stdin=patch)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise ChangeError(
            f"the patch does not apply to {where}: {why[-1] if why else 'git apply failed'}"
        )
