"""A git server on a simulated host: user `git` (login shell git-shell, key-only), a bare
repository served over SSH, and a deploy key allowed to fetch and push it.

    server = GitHost(net.hosts["git-host"])
    key = server.add_deploy_key(tmp / "deploy")       # the private key, 0600, on this machine
    server.create("app", {"README.md": "hello\\n"})   # main with one commit
    server.url("app")                                  # ssh://git@10.213.0.N/srv/git/app.git
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.simhosts import SimHost

HOME = "/srv/git"


class GitHost:
    def __init__(self, host: SimHost) -> None:
        self.host = host
        self._run(
            "id git >/dev/null 2>&1 || useradd --system --home-dir /srv/git --create-home "
            "--shell /usr/bin/git-shell -p '*' git; "
            "mkdir -p /srv/git/.ssh && touch /srv/git/.ssh/authorized_keys && "
            "chown -R git:git /srv/git && chmod 700 /srv/git/.ssh && "
            "chmod 600 /srv/git/.ssh/authorized_keys"
        )

    @property
    def host_key(self) -> str:
        return self.host.host_key_line

    def url(self, name: str) -> str:
        return f"ssh://git@{self.host.address}{HOME}/{name}.git"

    def add_deploy_key(self, private: Path) -> Path:
        """A new ed25519 key pair here (`private`, 0600; `private`.pub), allowed in."""
        private.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deploy", "-f", str(private)],
            check=True,
        )
        public = private.with_suffix(".pub").read_text().strip()
        self._run(f"echo '{public}' >> {HOME}/.ssh/authorized_keys")
        return private

    def create(self, name: str, files: dict[str, str]) -> str:
        """A bare repository whose `main` has one commit with `files`; its commit id."""
        script = [
            f"git init -q --bare -b main {HOME}/{name}.git",
            "work=$(mktemp -d) && cd $work && git init -q -b main",
        ]
        for path, text in files.items():
            script.append(f"mkdir -p \"$(dirname '{path}')\" && printf '%s' '{text}' > '{path}'")
        script += [
            "git add -A",
            "git -c user.name=seed -c user.email=seed@example.invalid commit -q -m seed",
            f"git push -q {HOME}/{name}.git main",
            "git rev-parse HEAD",
        ]
        return self._run(" && ".join(script), user="git").strip()

    def head(self, name: str, branch: str = "main") -> str:
        return self._run(f"git --git-dir={HOME}/{name}.git rev-parse {branch}", user="git").strip()

    def _run(self, script: str, user: str | None = None) -> str:
        done = self.host.run(["sh", "-c", script], user=user, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"git host: {script}: {done.stderr.decode().strip()}")
        return done.stdout.decode()
