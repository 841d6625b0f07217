"""Real git repositories for tests: an upstream (a bare repository reached by a file:// URL,
standing in for the forge), the host's bare mirror of it, and the worker's REPOS_FILE.

The mirror is made the way the host's provisioning makes it (docs/poller.md, "The host's
mirror"): `git init --bare`, shared with the repository's group; the poller fetches into it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IDENT = ("-c", "user.name=upstream", "-c", "user.email=upstream@example.invalid")


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, input=input
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class Upstream:
    bare: Path
    checkout: Path  # a clone to make commits in

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, files: Mapping[str, str], message: str = "change") -> str:
        """Commit `files` on main and push it; the new commit id."""
        for rel, text in files.items():
            path = self.checkout / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.checkout, "add", "-A")
        git(self.checkout, *IDENT, "commit", "-q", "-m", message)
        git(self.checkout, "push", "-q", "origin", "HEAD:refs/heads/main")
        return self.head()

    def head(self, ref: str = "main") -> str:
        return git(self.bare, "rev-parse", ref)

    def branches(self) -> dict[str, str]:
        out = git(
            self.bare, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads"
        )
        return dict(line.split(" ", 1) for line in out.splitlines())


def upstream(root: Path, files: Mapping[str, str], name: str = "app") -> Upstream:
    """A bare repository with one commit of `files` on `main` (its HEAD)."""
    bare = root / f"{name}-upstream.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    checkout = root / f"{name}-checkout"
    git(root, "clone", "-q", str(bare), str(checkout))
    git(checkout, "checkout", "-q", "-b", "main")
    up = Upstream(bare, checkout)
    up.commit(files, "initial")
    return up


def mirror(root: Path, name: str = "app") -> Path:
    """An empty bare mirror, as provisioning makes it (the poller fetches what it needs)."""
    path = root / "repos" / f"{name}.git"
    path.parent.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "--bare", str(path))
    git(path, "config", "core.sharedRepository", "group")
    return path


def repo_entry(up: Upstream, mirror_path: Path, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "url": up.url,
        "mirror": str(mirror_path),
        "ref": None,
        "ssh_key": None,
        "known_hosts": None,
        "token_file": None,
        "setup": [],
        "check": [],
        "copy": [],
        "push": False,
        "pull_request": None,
        "retain_s": 86400,
    }
    entry.update(fields)
    return entry


def repos_file(
    path: Path,
    repos: Mapping[str, Mapping[str, Any]],
    *,
    worktrees: Path,
    default: str | None = None,
    min_free_bytes: int = 0,
) -> Path:
    doc = {
        "format": 1,
        "default": default,
        "worktrees": str(worktrees),
        "min_free_bytes": min_free_bytes,
        "repos": dict(repos),
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)
    return path
