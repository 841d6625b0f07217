"""How this machine reaches a repository's remote with fleet.yaml's credentials: git's
environment, as the hosts' git gets it (the pinned host key and nothing else, the deploy key,
the token in an HTTP header), for `fleetctl up`'s mirrors and for resolving a task's ref to a
commit before it is published (`git ls-remote`).

    with remote_env(repo) as env:
        subprocess.run(["git", "ls-remote", "--", repo.url, "main"], env=env, ...)

The token travels in git's environment (`GIT_CONFIG_*`), never on a command line; the pinned
host key in a private temporary known_hosts, removed on exit.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fleetctl.config.gitvalues import parse_url
from fleetctl.config.model import Repo
from fleetctl.identity import repocreds

# Only these transports, whatever a URL, a submodule or a redirect asks for.
PROTOCOLS = "ssh:https:file"


def git_env(
    *,
    home: Path,
    ssh_key: str | None = None,
    known_hosts: Path | None = None,
    token: bytes | None = None,
    gitconfig: Path | None = None,
) -> dict[str, str]:
    """No prompt, no config but `gitconfig` (else none), only the ssh, https and file
    transports, ssh with the pinned host key and the deploy key alone, the token (alone, no
    newline) as `Authorization: Basic` for https."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": PROTOCOLS,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(gitconfig) if gitconfig else os.devnull,
    }
    if ssh_key:
        ssh = ["ssh", "-F", os.devnull, "-i", ssh_key, "-o", "IdentitiesOnly=yes"]
        ssh += ["-o", "IdentityAgent=none", "-o", "BatchMode=yes"]
        ssh += ["-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no"]
        ssh += ["-o", f"GlobalKnownHostsFile={os.devnull}"]
        ssh += ["-o", f"UserKnownHostsFile={known_hosts or os.devnull}"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
    if token:
        basic = base64.b64encode(b"x-access-token:" + token.strip()).decode()
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }
    return env


@contextlib.contextmanager
def remote_env(repo: Repo) -> Iterator[dict[str, str]]:
    """git's environment to reach `repo`'s remote from this machine (its credential files
    checked as apply checks them: `LocalFileError` with the fix)."""
    secrets = repocreds.read(repo)
    with tempfile.TemporaryDirectory(prefix="fleetctl-git-") as tmp:
        home = Path(tmp)
        known_hosts = None
        if repo.host_key and parse_url(repo.url).scheme == "ssh":
            known_hosts = home / "known_hosts"
            key = " ".join(repo.host_key.split()[:2])
            known_hosts.write_text(f"{parse_url(repo.url).known_hosts_name} {key}\n")
        ssh_key = str(repo.deploy_key) if repo.deploy_key else None
        yield git_env(home=home, ssh_key=ssh_key, known_hosts=known_hosts, token=secrets.token)
