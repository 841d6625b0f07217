"""The code a task works on, resolved once by the publisher: the repository, the ref asked
for, and the commit (`base`) every target of a fan-out then starts from.

`task send --repo NAME [--ref REF]` and the client's `repo=`, `ref=` come here before
anything is published. The names are checked as the poller checks them (poller/repos.py: the
same refusals on both sides), the repository must be one every target may use, and the ref is
resolved with `git ls-remote` on the repository's URL with fleet.yaml's credentials
(fleetctl/identity/repoaccess.py); a full commit id needs no lookup. Without `--repo`, a task
sent to workers that share one default repository is pinned the same way (so a fan-out is
comparable); workers with different defaults each take the tip of their own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleetctl.config.model import Fleet, Repo
from fleetctl.errors import LocalFileError
from fleetctl.identity.repoaccess import remote_env
from poller.repos import BASE, RepoError, check_name, check_ref

LS_REMOTE_TIMEOUT = 60.0


class CodeError(ValueError):
    """The task's code cannot be named or resolved as asked: nothing is published."""


@dataclass(frozen=True)
class Code:
    """What goes into the task: `repo`, `ref` (as asked, or the repository's), `base`."""

    repo: str
    ref: str | None
    base: str

    def fields(self) -> dict[str, str]:
        out = {"repo": self.repo, "base": self.base}
        if self.ref is not None:
            out["ref"] = self.ref
        return out


def choose(
    fleet: Fleet, workers: Sequence[str], repo: str | None, ref: str | None
) -> tuple[Repo, str | None] | None:
    """The repository the task names (checked against every target), or the targets'
    shared default; None when the task names none and they share none."""
    if ref is not None:
        _checked(check_ref, ref, "--ref")
    targets = [w for w in (fleet.worker(w) for w in workers) if w is not None]
    if repo is None:
        defaults = {w.repo for w in targets}
        if len(defaults) == 1 and None not in defaults:
            name = defaults.pop()
            assert name is not None
            return fleet.repos[name], ref
        if ref is not None:
            raise CodeError("--ref needs --repo: the targets have no one repository in common")
        return None
    _checked(check_name, repo, "--repo")
    declared = fleet.repos.get(repo)
    if declared is None:
        have = ", ".join(fleet.repos) or "none"
        raise CodeError(f"--repo {repo}: no such repository in fleet.yaml repos: (it has: {have})")
    lacking = [w.id for w in targets if repo not in w.repos]
    if lacking:
        raise CodeError(
            f"--repo {repo}: {', '.join(lacking)} may not work on it (add it to each worker's "
            "`repo:` or `repos:` in fleet.yaml)"
        )
    return declared, ref


def _checked(check: Callable[[str], str], value: str, option: str) -> None:
    try:
        check(value)
    except RepoError as e:
        raise CodeError(f"{option}: {e}") from None


def resolve(repo: Repo, ref: str | None) -> Code:
    """The commit `ref` (else the repository's `ref`, else the remote's HEAD) names now."""
    wanted = ref or repo.ref
    if wanted is not None and BASE.fullmatch(wanted):
        return Code(repo.name, ref, wanted)
    name = wanted or "HEAD"
    try:
        with remote_env(repo) as env:
            done = subprocess.run(
                # `NAME^{}` too: ls-remote lists an annotated tag's commit only when asked
                ["git", "ls-remote", "--", repo.url, name, f"{name}^{{}}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=LS_REMOTE_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
    except LocalFileError as e:
        raise CodeError(f"repository {repo.name}: {e}") from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CodeError(f"repository {repo.name}: git ls-remote: {e}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CodeError(f"repository {repo.name} ({repo.url}): git ls-remote failed: {why}")
    commit = pick(done.stdout, name)
    if commit is None:
        raise CodeError(f"ref {name!r} is not in {repo.name} ({repo.url})")
    return Code(repo.name, ref if ref is not None else repo.ref, commit)


def pick(listing: str, ref: str) -> str | None:
    """The commit `git ls-remote URL REF` says `ref` is: a full ref name exactly, else the
    branch, else the tag (an annotated tag's commit, `^{}`)."""
    found: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if sha and name:
            found[name] = sha
    if ref.startswith("refs/") or ref == "HEAD":
        order = [f"{ref}^{{}}", ref]
    else:
        order = [f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"]
    return next((found[name] for name in order if name in found), None)
