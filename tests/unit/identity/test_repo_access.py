"""git's environment for reaching a repository's remote from this machine: the pinned host key
alone, the deploy key alone, the token only in an HTTP header from the environment, and only
the ssh, https and file transports; checked with real git against a local repository."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
from pathlib import Path

from fleetctl.config.errors import Mark
from fleetctl.config.model import Repo
from fleetctl.identity.repoaccess import git_env, remote_env

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_ssh_takes_the_pinned_host_key_and_the_deploy_key_and_nothing_else(tmp_path: Path) -> None:
    env = git_env(home=tmp_path, ssh_key="/k/deploy key", known_hosts=tmp_path / "kh")
    assert shlex.split(env["GIT_SSH_COMMAND"]) == [
        "ssh", "-F", os.devnull, "-i", "/k/deploy key", "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", "UpdateHostKeys=no", "-o", f"GlobalKnownHostsFile={os.devnull}",
        "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
    ]  # fmt: skip
    assert env["GIT_ALLOW_PROTOCOL"] == "ssh:https:file"
    assert (env["GIT_CONFIG_NOSYSTEM"], env["GIT_CONFIG_GLOBAL"]) == ("1", os.devnull)
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_CONFIG_COUNT" not in env


def test_the_token_goes_in_a_header_from_the_environment(tmp_path: Path) -> None:
    env = git_env(home=tmp_path, token=b"ghp_secret123\n")
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_0"]) == ("1", "http.extraHeader")
    header = env["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: Basic ")
    assert base64.b64decode(header) == b"x-access-token:ghp_secret123"
    assert "GIT_SSH_COMMAND" not in env


def test_remote_env_reaches_a_repository_and_refuses_ext(tmp_path: Path) -> None:
    src = tmp_path / "src.git"
    seed = tmp_path / "seed"
    script = (
        f"git init -q -b main {seed} && cd {seed} && "
        "git -c user.name=t -c user.email=t@t commit -q --allow-empty -m x && "
        f"git init -q --bare {src} && git push -q {src} main && git rev-parse HEAD"
    )
    head = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    repo = Repo("app", f"file://{src}", Mark("fleet.yaml", 1, 1))
    with remote_env(repo) as env:
        found = subprocess.run(
            ["git", "ls-remote", "--", repo.url, "main"], env=env, capture_output=True, text=True
        )
        assert found.stdout.split() == [head.stdout.strip(), "refs/heads/main"]
        refused = subprocess.run(
            ["git", "ls-remote", "--", "ext::sh -c touch% /tmp/x", "main"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0 and "transport 'ext' not allowed" in refused.stderr
    assert not Path(env["HOME"]).exists()  # the temporary known_hosts is gone


def test_the_pinned_host_key_is_written_as_ssh_names_the_host() -> None:
    repo = Repo("app", "ssh://git@git.example.com:2222/x.git", Mark("f", 1, 1), host_key=KEY)
    with remote_env(repo) as env:
        known = Path(env["HOME"]) / "known_hosts"
        assert known.read_text() == f"[git.example.com]:2222 {KEY}\n"
