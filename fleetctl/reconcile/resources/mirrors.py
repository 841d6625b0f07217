"""A repository's bare mirror on a host (`/var/lib/fleet/repos/<name>.git`): what every task's
worktree is made from, shared by the host's workers that use the repository.

Owned by the repository's user and group (`fleet-repo-<name>`, mode 2770, git's
`core.sharedRepository=group`): the workers that use it get the group through their units,
so they may fetch into it and add worktrees, and nobody else on the host may read it. Made
and fetched once by apply (as that user, with the repository's credential and pinned host
key, so a wrong key or URL fails the apply at this step); the pollers fetch it before each
task (docs/poller.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fleetctl import layout
from fleetctl.reconcile.resources.base import Attrs, HostKind, Staged, Step

MIRROR_MODE = 0o2770
# What the mirror fetches, as the pollers fetch it (docs/poller.md, "The host's mirror"): the
# remote's branches as remote-tracking refs, so the tasks' own branches (refs/heads/af/...)
# are never overwritten or pruned by a fetch, and its tags.
FETCH_REFSPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
# The file the pollers and apply hold an flock on while they fetch: one fetch at a time.
FETCH_LOCK = "fleet-fetch.lock"
FETCH_TIMEOUT = 900  # seconds apply's first fetch may take


@dataclass(frozen=True)
class MirrorSpec(HostKind):
    kind: ClassVar[str] = "repo"
    order: ClassVar[int] = 5  # after its user, git, and the files its fetch reads

    name: str
    url: str
    user: str  # its owner and group, fleet-repo-<name>
    ssh_key: str | None = None  # paths on the host
    known_hosts: str | None = None
    token_file: str | None = None
    gitconfig: str | None = None  # git's global config for it: safe.directory
    worker: str | None = None

    @property
    def path(self) -> str:
        return layout.repo_mirror(self.name)

    @property
    def key(self) -> str:
        return f"repo {self.name}"

    def fingerprint(self) -> dict[str, object]:
        return {"url": self.url, "owner": self.user, "group": self.user, "mode": MIRROR_MODE}

    def describe(self) -> tuple[str, Attrs]:
        return self.name, (("url", self.url), ("mirror", self.path))

    @classmethod
    def ask(cls, wanted: Sequence[MirrorSpec], *, with_contents: bool) -> dict[str, Any]:
        return cls.recall([r.name for r in wanted])

    @classmethod
    def recall(cls, names: Sequence[str]) -> dict[str, Any]:
        return {"repos": list(names)}

    @classmethod
    def read(cls, answer: Mapping[str, Any]) -> dict[str, dict[str, object]]:
        """A mirror is there when its directory is; its URL is its remote origin's (None:
        not a repository fleetctl configured)."""
        return {
            f"repo {name}": {
                "url": st["url"],
                "owner": st["owner"],
                "group": st["group"],
                "mode": st["mode"],
            }
            for name, st in (answer.get("repos") or {}).items()
            if st is not None
        }

    def steps(self, staged: Staged) -> list[Step]:
        """Create (or repair) the mirror, point it at its URL, and fetch it: the first fetch
        proves the credential, the host key and the URL before any task needs them."""
        op = {
            "op": "repo",
            "path": self.path,
            "url": self.url,
            "user": self.user,
            "mode": MIRROR_MODE,
            "refspecs": list(FETCH_REFSPECS),
            "lock": FETCH_LOCK,
            "ssh_key": self.ssh_key,
            "known_hosts": self.known_hosts,
            "token_file": self.token_file,
            "gitconfig": self.gitconfig,
            "timeout": FETCH_TIMEOUT,
        }
        return [Step(f"repo {self.name}: fetch {self.url}", op)]

    @classmethod
    def removal_steps(cls, name: str) -> list[Step]:
        """The mirror goes whole, with every task branch in it that was not pushed."""
        path = layout.repo_mirror(name)
        return [Step(f"remove repo {name}", {"op": "remove_dir", "path": path})]

    @classmethod
    def removed_path(cls, name: str) -> str | None:
        return layout.repo_mirror(name)

    @classmethod
    def removed_late(cls, name: str) -> bool:
        """A stopping worker may still be working in a worktree of it."""
        return True
