"""What a repository puts on a worker host, exactly: git, its user and mirror, its
credential and pinned host key (readable by its group only), each worker's REPOS_FILE, and
the unit lines that let the worker use them; and what a second host, or a worker without a
repository, does not get."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.identity.repocreds import RepoSecrets
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.desired.state import HostState
from fleetctl.reconcile.inputs import Inputs
from fleetctl.reconcile.plan.fleet import make_plan

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
SERVERS = {
    "version": 1,
    "servers": [
        {"name": "b", "address": "192.0.2.1", "roles": ["broker-host"]},
        {"name": "n1", "address": "192.0.2.2", "roles": ["worker-host"]},
        {"name": "n2", "address": "192.0.2.3", "roles": ["worker-host"]},
    ],
}
SECRETS = {
    "app": RepoSecrets(b"-----BEGIN OPENSSH PRIVATE KEY-----\nk\n", b"tok-123456\n", (b"A=1\n",)),
}


def _worker(wid: str, host: str = "n1", **more: Any) -> dict[str, Any]:
    return {"worker_id": wid, "llm": "command", "command": ["wc"], "host": host, **more}


def fleet(tmp_path: Path) -> Fleet:
    body = {
        "version": 1,
        "repos": {
            "app": {
                "url": "ssh://git@git.example.com:2222/team/app.git",
                "host_key": KEY,
                "credentials": {"deploy_key": "k", "token": "t"},
                "ref": "main",
                "setup": ["make", "deps"],
                "check": ["make", "test"],
                "copy": [{"from": "app.env", "to": "config/.env"}],
                "pull_request": {"api": "https://ghe.example.com/api/v3", "repo": "team/app"},
                "retain": "2h",
            },
            "lib": {"url": "file:///srv/git/lib.git"},
        },
        "workers": [
            _worker("w1", repo="app", repos=["lib"]),
            _worker("w2", repo="app", concurrency=3),
            _worker("w3", host="n2", repo="lib", create_pr=False),
            _worker("w4", host="n2"),
            _worker("w5", host="n2", repo="app", enabled=False),
        ],
    }
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump(SERVERS))
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


def state(tmp_path: Path, host: str) -> HostState:
    return desired_state(fleet(tmp_path), Inputs(repo_secrets=SECRETS)).hosts[host]


def files(s: HostState) -> dict[str, tuple[str, str, bool, str | None]]:
    return {
        f.path: (f"{f.mode:04o}", f"{f.owner}:{f.group}", f.sensitive, f.worker)
        for f in s.files
        if "/repos" in f.path or "/workers/" in f.path
    }


def test_a_host_gets_git_the_repositorys_user_mirror_and_files_readable_by_its_group(
    tmp_path: Path,
) -> None:
    s = state(tmp_path, "n1")
    assert [p.name for p in s.packages if p.name == "git"] == ["git"]
    repo_users = [(u.name, u.home, u.worker) for u in s.users if u.name.startswith("fleet-repo")]
    assert repo_users == [
        ("fleet-repo-app", "/var/lib/fleet/repos/app.git", None),  # two workers use it
        ("fleet-repo-lib", "/var/lib/fleet/repos/lib.git", "w1"),  # one: it is w1's
    ]
    assert files(s) == {
        "/etc/fleet/repos/app/deploy_key": ("0640", "root:fleet-repo-app", True, None),
        "/etc/fleet/repos/app/token": ("0640", "root:fleet-repo-app", True, None),
        "/etc/fleet/repos/app/copy/0": ("0640", "root:fleet-repo-app", True, None),
        "/etc/fleet/repos/app/known_hosts": ("0644", "root:root", False, None),
        "/etc/fleet/repos/app/gitconfig": ("0644", "root:root", False, None),
        "/etc/fleet/repos/lib/gitconfig": ("0644", "root:root", False, "w1"),
        "/etc/fleet/workers/w1/repos.json": ("0640", "root:fleet-w1", False, "w1"),
        "/etc/fleet/workers/w2/repos.json": ("0640", "root:fleet-w2", False, "w2"),
    }
    by_path = {f.path: f.content for f in s.files}
    assert by_path["/etc/fleet/repos/app/known_hosts"] == f"[git.example.com]:2222 {KEY}\n".encode()
    assert by_path["/etc/fleet/repos/app/token"] == b"tok-123456\n"
    assert by_path["/etc/fleet/repos/lib/gitconfig"] == (
        b"# Managed by fleetctl: git's settings for repository lib.\n"
        b"[safe]\n\tdirectory = /var/lib/fleet/repos/lib.git\n\tdirectory = /srv/git/lib.git\n"
    )
    assert [
        (m.name, m.url, m.user, m.ssh_key, m.known_hosts, m.token_file, m.worker) for m in s.mirrors
    ] == [
        (
            "app",
            "ssh://git@git.example.com:2222/team/app.git",
            "fleet-repo-app",
            "/etc/fleet/repos/app/deploy_key",
            "/etc/fleet/repos/app/known_hosts",
            "/etc/fleet/repos/app/token",
            None,
        ),
        ("lib", "file:///srv/git/lib.git", "fleet-repo-lib", None, None, None, "w1"),
    ]


def test_each_worker_reads_its_repositories_from_its_own_file(tmp_path: Path) -> None:
    s = state(tmp_path, "n1")
    doc = json.loads(next(f.content for f in s.files if f.path.endswith("w1/repos.json")))
    assert doc == {
        "format": 1,
        "default": "app",
        "worktrees": "/var/lib/fleet/w1/worktrees",
        "min_free_bytes": 1024**3,
        "repos": {
            "app": {
                "url": "ssh://git@git.example.com:2222/team/app.git",
                "mirror": "/var/lib/fleet/repos/app.git",
                "ref": "main",
                "ssh_key": "/etc/fleet/repos/app/deploy_key",
                "known_hosts": "/etc/fleet/repos/app/known_hosts",
                "token_file": "/etc/fleet/repos/app/token",
                "gitconfig": "/etc/fleet/repos/app/gitconfig",
                "setup": ["make", "deps"],
                "check": ["make", "test"],
                "copy": [{"from": "/etc/fleet/repos/app/copy/0", "to": "config/.env"}],
                "push": True,
                "pull_request": {
                    "api": "https://ghe.example.com/api/v3",
                    "repo": "team/app",
                    "base": None,
                },
                "retain_s": 7200,
            },
            "lib": {
                "url": "file:///srv/git/lib.git",
                "mirror": "/var/lib/fleet/repos/lib.git",
                "ref": None,
                "ssh_key": None,
                "known_hosts": None,
                "token_file": None,
                "gitconfig": "/etc/fleet/repos/lib/gitconfig",
                "setup": [],
                "check": [],
                "copy": [],
                "push": False,
                "pull_request": None,
                "retain_s": 86400,
            },
        },
    }


def test_the_unit_joins_the_groups_and_may_write_the_mirrors_of_its_repositories(
    tmp_path: Path,
) -> None:
    s = state(tmp_path, "n1")
    unit = next(f.content.decode() for f in s.files if f.path.endswith("w1-poller.service"))
    lines = unit.splitlines()
    assert [line for line in lines if line.startswith("SupplementaryGroups=")] == [
        "SupplementaryGroups=fleet-repo-app",
        "SupplementaryGroups=fleet-repo-lib",
    ]
    assert [line for line in lines if line.startswith("ReadWritePaths=")] == [
        "ReadWritePaths=/var/lib/fleet/w1",
        "ReadWritePaths=/var/lib/fleet/repos/app.git",
        "ReadWritePaths=/var/lib/fleet/repos/lib.git",
    ]
    assert "Environment=REPOS_FILE=/etc/fleet/workers/w1/repos.json" in lines
    w1 = next(u for u in s.units if u.name == "w1-poller.service")
    assert "/etc/fleet/workers/w1/repos.json" in w1.restart_on


def test_a_host_gets_only_what_its_enabled_workers_use(tmp_path: Path) -> None:
    s = state(tmp_path, "n2")  # w3 uses lib; w4 none; w5 (app) is disabled
    assert [m.name for m in s.mirrors] == ["lib"]
    assert not any("/repos/app" in f.path for f in s.files)
    assert not any(f.path.endswith("w4/repos.json") for f in s.files)
    w4 = next(f.content.decode() for f in s.files if f.path.endswith("w4-poller.service"))
    assert "REPOS_FILE" not in w4 and "SupplementaryGroups" not in w4
    broker = state(tmp_path, "b")
    assert not broker.mirrors and "git" not in [p.name for p in broker.packages]


def test_create_pr_opens_pull_requests_for_its_workers_tasks_only(tmp_path: Path) -> None:
    s = state(tmp_path, "n2")
    doc = json.loads(next(f.content for f in s.files if f.path.endswith("w3/repos.json")))
    assert (doc["repos"]["lib"]["push"], doc["repos"]["lib"]["pull_request"]) == (False, None)


def test_the_plan_shows_the_mirror_and_never_a_secret(tmp_path: Path) -> None:
    desired = desired_state(fleet(tmp_path), Inputs(repo_secrets=SECRETS))
    plan = make_plan(desired)
    n1 = next(h for h in plan.hosts if h.name == "n1")
    repo = next(c for c in n1.changes if c.kind == "repo" and c.name == "app")
    assert repo.attrs == (
        ("url", "ssh://git@git.example.com:2222/team/app.git"),
        ("mirror", "/var/lib/fleet/repos/app.git"),
    )
    secret = next(c for c in n1.changes if c.name == "/etc/fleet/repos/app/deploy_key")
    assert secret.sensitive
    text = repr(plan)
    assert "tok-123456" not in text and "OPENSSH PRIVATE" not in text and "A=1" not in text
