"""fleet.yaml `repos:` and a worker's `repo:`/`repos:`: the values refused and why, the
resolved repositories, and the rules between keys, each reported at its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetctl.config.errors import BadValue, ConfigError
from fleetctl.config.gitvalues import _git_ref, _git_url, _worktree_path, parse_url
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet, PullRequest, RepoCopy, worker_repo

SERVERS = {
    "version": 1,
    "servers": [
        {"name": "b", "address": "192.0.2.1", "roles": ["broker-host"]},
        {"name": "n1", "address": "192.0.2.2", "roles": ["worker-host"]},
    ],
}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _worker(wid: str, **more: Any) -> dict[str, Any]:
    return {"worker_id": wid, "llm": "command", "command": ["/bin/true"], "host": "n1", **more}


def _load(tmp_path: Path, body: dict[str, Any]) -> Fleet:
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump(SERVERS))
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump({"version": 1, **body}, sort_keys=False))
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


def _problems(tmp_path: Path, body: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body)
    return [str(p).split(": ", 1)[1] for p in caught.value.problems]


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:team/app.git",
        "github.com:team/app.git",
        "ssh://git@git.example.com:2222/srv/app.git",
        "ssh://git@[2001:db8::1]/app.git",
        "https://github.com/team/app.git",
        "https://git.example.com:8443/team/app",
        "file:///srv/git/app.git",
    ],
)
def test_repository_urls_of_ssh_https_and_file_are_taken(url: str) -> None:
    assert _git_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ext::sh -c touch% /tmp/x", "transport helper"),
        ("ext::ssh", "transport helper"),
        ("fd::3", "transport helper"),
        ("--upload-pack=touch /tmp/x", "option"),
        ("-oProxyCommand=x:y", "option"),
        ("ssh://-oProxyCommand=touch/x", "no valid host"),
        ("-host:path", "option"),
        ("git@host:-path", "starts with '-'"),
        ("http://github.com/team/app.git", "neither encrypts nor authenticates"),
        ("git://github.com/team/app.git", "neither encrypts nor authenticates"),
        ("https://user:pw@github.com/team/app.git", "user or password"),
        ("https://ghp_token@github.com/team/app.git", "user or password"),
        ("/srv/git/app.git", "is a path"),
        ("../app.git", "is a path"),
        ("file://host/srv/app.git", "file:///ABSOLUTE/PATH"),
        ("file:///srv/../etc/app.git", "'..'"),
        ("https://github.com/team/app.git?x=1", "no use for"),
        ("https://github.com/$(id)", "no use for"),
        ("git@github.com:team/app.git\n", "control character"),
        ("ftp://host/app.git", "not a transport"),
    ],
)
def test_dangerous_or_wrong_urls_are_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(BadValue) as caught:
        _git_url(url)
    assert why in caught.value.what


@pytest.mark.parametrize("ref", ["main", "release/1.2", "v1.0.0", "refs/heads/main", "a" * 40])
def test_refs_git_takes_are_taken(ref: str) -> None:
    assert _git_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    ["--upload-pack=x", "-b", "../x", "/main", "main/", "a..b", "a b", "x:y", "@", "a.lock", ".x"],
)
def test_refs_that_are_options_paths_or_not_refs_are_refused(ref: str) -> None:
    with pytest.raises(BadValue):
        _git_ref(ref)


@pytest.mark.parametrize("path", ["../x", "/etc/x", ".git/hooks/pre-commit", "a/../../b", "-x"])
def test_a_copied_file_stays_inside_the_worktree_and_out_of_git(path: str) -> None:
    with pytest.raises(BadValue):
        _worktree_path(path)


def test_urls_are_taken_apart_for_known_hosts_and_forges() -> None:
    scp = parse_url("git@github.com:team/app.git")
    assert (scp.scheme, scp.host, scp.port, scp.user, scp.known_hosts_name) == (
        "ssh",
        "github.com",
        None,
        "git",
        "github.com",
    )
    ssh = parse_url("ssh://git@10.0.0.5:2222/srv/app.git")
    assert (ssh.host, ssh.port, ssh.known_hosts_name) == ("10.0.0.5", 2222, "[10.0.0.5]:2222")
    assert parse_url("file:///srv/app.git").scheme == "file"


def test_a_repository_resolves_with_its_files_beside_fleet_yaml(tmp_path: Path) -> None:
    fleet = _load(
        tmp_path,
        {
            "repos": {
                "app": {
                    "url": "git@github.com:team/app.git",
                    "host_key": KEY,
                    "credentials": {"deploy_key": "keys/app", "token": "/abs/token.env"},
                    "setup": ["npm", "ci"],
                    "check": ["npm", "test"],
                    "copy": [{"from": "secrets/app.env", "to": ".env"}],
                    "pull_request": True,
                    "retain": "2h",
                },
                "docs": {"url": "https://github.com/team/docs.git", "credentials": "docs.env"},
                "local": {"url": "file:///srv/git/local.git", "ref": "trunk"},
            },
            "defaults": {"repo": "app"},
            "workers": [
                _worker("w1"),
                _worker("w2", repo="local", repos=["docs", "local"]),
            ],
        },
    )
    app, docs, local = fleet.repos["app"], fleet.repos["docs"], fleet.repos["local"]
    assert app.deploy_key == tmp_path / "keys/app"
    assert app.token == Path("/abs/token.env")
    assert (app.setup, app.check, app.retain) == (("npm", "ci"), ("npm", "test"), 7200)
    assert app.copy == (RepoCopy(tmp_path / "secrets/app.env", ".env"),)
    assert (app.push, app.pull_request) == (True, True)
    assert app.forge == PullRequest("https://api.github.com", "team/app")
    assert app.user == "fleet-repo-app"
    # a bare path is the token of an https remote; a public file remote has nothing
    assert (docs.deploy_key, docs.token) == (None, tmp_path / "docs.env")
    assert (docs.push, docs.pull_request, docs.forge) == (
        False,
        False,
        PullRequest("https://api.github.com", "team/docs"),
    )
    assert (local.ref, local.deploy_key, local.token, local.forge) == ("trunk", None, None, None)
    w1, w2 = fleet.workers
    assert (w1.repo, w1.repos) == ("app", ("app",))
    assert (w2.repo, w2.repos) == ("local", ("local", "docs"))
    assert [r.name for r in fleet.repos_on("n1")] == ["app", "docs", "local"]


def test_create_pr_pushes_and_opens_pull_requests_for_its_worker_only(tmp_path: Path) -> None:
    fleet = _load(
        tmp_path,
        {
            "repos": {"docs": {"url": "https://github.com/team/docs.git", "credentials": "t"}},
            "workers": [_worker("w1", repo="docs", create_pr=True), _worker("w2", repo="docs")],
        },
    )
    docs = fleet.repos["docs"]
    w1, w2 = fleet.workers
    assert worker_repo(w1, docs).push and worker_repo(w1, docs).pull_request == docs.forge
    assert not worker_repo(w2, docs).push and worker_repo(w2, docs).pull_request is None


def test_every_contradiction_between_keys_is_reported_at_its_line(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        {
            "repos": {
                "app": {"url": "git@git.example.com:x/y.git"},
                "web": {
                    "url": "https://git.example.com/web.git",
                    "push": True,
                    "pull_request": True,
                    "host_key": KEY,
                },
                "loc": {"url": "file:///srv/loc.git", "credentials": "x"},
                "pr": {
                    "url": "https://github.com/t/pr.git",
                    "credentials": {"deploy_key": "k", "token": "t"},
                    "push": False,
                    "pull_request": True,
                },
            },
            "workers": [
                _worker("w1", repo="ap", github_remote="upstream"),
                _worker("w2", create_pr=True),
                _worker("w3", repo="web", create_pr=True, github_remote="upstream"),
                _worker("repo-loc"),
            ],
        },
    )
    assert problems == [
        "repos.app: the ssh remote 'git@git.example.com:x/y.git' needs a deploy key "
        "(set credentials: to the deploy key's private key file)",
        "repos.app: the ssh remote 'git@git.example.com:x/y.git' needs its host key pinned "
        "(set host_key: to the key `ssh-keyscan -t ed25519 git.example.com` prints, without "
        "the host name)",
        "repos.web.push: pushing over https needs a token (set credentials: to an env file "
        "with GITHUB_TOKEN=..., or use the ssh URL)",
        "repos.web.pull_request: opening a pull request needs a forge token (add credentials: "
        "{token: FILE}, an env file with GITHUB_TOKEN=...)",
        "repos.web.pull_request: pull_request: true knows only github.com, and the remote is "
        "on git.example.com (write pull_request: {api: https://HOST/api/v3, repo: OWNER/NAME})",
        "repos.web.host_key: only an ssh remote has a host key; "
        "'https://git.example.com/web.git' is https (remove host_key:)",
        "repos.loc.credentials: a file:// repository is read directly: it has no credentials "
        "(remove credentials:)",
        "repos.pr.credentials.deploy_key: only an ssh remote uses a deploy key, not https "
        "(use the ssh URL, or remove deploy_key: and give a token:)",
        "repos.pr.push: is false, but pull_request: opens a pull request, which needs the "
        "branch pushed (remove push: false, or pull_request:)",
        "workers[0].repo: no repository 'ap' in repos: (did you mean 'app'? declared: app, "
        "loc, pr, web)",
        "workers[1].create_pr: create_pr pushes each task's branch to the worker's "
        "repository, and it has none (the shared work dir it used to push from is gone: each "
        "task has its own worktree) (set repo: NAME (one of repos:) on this worker, or remove "
        "create_pr)",
        "workers[2].create_pr: create_pr opens a pull request for each task on repository "
        "'web', and it has no token (credentials: {token: FILE}) (set up repos.web for pull "
        "requests, or remove create_pr)",
        "workers[2].github_remote: is 'upstream', but a worker with a repository pushes to "
        "the repository's url (the mirror's remote, origin) (remove github_remote: (change "
        "repos.NAME.url to push elsewhere))",
        "workers[3].worker_id: 'repo-loc' would run as the user 'fleet-repo-loc', which owns "
        "the mirror of repository 'loc' (choose another worker_id)",
    ]


def test_defaults_create_pr_names_the_workers_without_a_repository_once(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        {
            "repos": {"docs": {"url": "https://github.com/team/docs.git", "credentials": "t"}},
            "defaults": {"create_pr": True, "repo": "nope"},
            "workers": [_worker("w1", repo="docs"), _worker("w2"), _worker("w3")],
        },
    )
    assert problems == [
        "defaults.repo: no repository 'nope' in repos: (declared: docs)",
    ]
    problems = _problems(
        tmp_path,
        {
            "repos": {"docs": {"url": "https://github.com/team/docs.git", "credentials": "t"}},
            "defaults": {"create_pr": True},
            "workers": [_worker("w1", repo="docs"), _worker("w2"), _worker("w3")],
        },
    )
    assert problems == [
        "defaults.create_pr: create_pr pushes each task's branch to the worker's repository, "
        "and 'w2', 'w3' have none (set defaults.repo: NAME (one of repos:), or repo: on those "
        "workers)"
    ]


def test_a_repository_name_fits_its_user_and_is_a_plain_word(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        {
            "repos": {
                "a" * 22: {"url": "file:///srv/a.git"},
                "App": {"url": "file:///srv/b.git"},
                "../x": {"url": "file:///srv/c.git"},
            },
            "workers": [_worker("w1")],
        },
    )
    assert [p.split(": ", 1)[1] for p in problems] == [
        f"{'a' * 22!r} is 22 characters long (use at most 21: the repository's user "
        "'fleet-repo-<name>' must fit Linux's 32)",
        "'App' has upper-case letters (use 'app')",
        "'../x' is not a valid repository name (use lower-case letters, digits and '-', "
        "starting with a letter or digit)",
    ]


def test_a_worker_named_repos_would_own_the_mirrors(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {"workers": [_worker("repos")]})
    assert len(problems) == 1
    assert "/var/lib/fleet/repos" in problems[0] and "mirrors" in problems[0]
