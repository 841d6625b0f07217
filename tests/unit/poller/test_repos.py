"""The repository file (REPOS_FILE) and what a task may name: parsed exactly, refused with the
field that is wrong, and nothing git could read as an option, a path or a transport."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from poller import config, repos
from poller.messages import Rejection, parse_task

SHA = "0123456789abcdef0123456789abcdef01234567"
FILE: dict[str, Any] = {
    "format": 1,
    "default": "app",
    "worktrees": "/var/lib/fleet/w1/worktrees",
    "min_free_bytes": 1073741824,
    "repos": {
        "app": {
            "url": "git@git.example.com:team/app.git",
            "mirror": "/var/lib/fleet/repos/app.git",
            "ref": "main",
            "ssh_key": "/etc/fleet/repos/app/id_ed25519",
            "known_hosts": "/etc/fleet/repos/app/known_hosts",
            "token_file": None,
            "setup": ["npm", "ci"],
            "check": ["npm", "test"],
            "copy": [{"from": "/etc/fleet/repos/app/copy/.env", "to": ".env"}],
            "push": True,
            "pull_request": {"api": "https://api.github.com", "repo": "team/app"},
            "retain_s": 86400,
        },
        "docs": {"url": "file:///srv/docs.git", "mirror": "/var/lib/fleet/repos/docs.git"},
    },
}


def test_the_documented_example_parses() -> None:
    got = repos.parse(FILE)
    assert (got.default, got.worktrees, got.min_free_bytes) == (
        "app",
        Path("/var/lib/fleet/w1/worktrees"),
        1073741824,
    )
    app = got.repos["app"]
    assert app == repos.Repo(
        name="app",
        url="git@git.example.com:team/app.git",
        mirror=Path("/var/lib/fleet/repos/app.git"),
        ref="main",
        ssh_key=Path("/etc/fleet/repos/app/id_ed25519"),
        known_hosts=Path("/etc/fleet/repos/app/known_hosts"),
        setup=("npm", "ci"),
        check=("npm", "test"),
        copy=(repos.Copy(Path("/etc/fleet/repos/app/copy/.env"), ".env"),),
        push=True,
        pull_request=repos.PullRequest("https://api.github.com", "team/app"),
        retain_s=86400.0,
    )
    docs = got.repos["docs"]  # every optional field at its default
    assert (docs.ref, docs.setup, docs.push, docs.pull_request, docs.retain_s) == (
        None,
        (),
        False,
        None,
        86400.0,
    )
    assert got.named(None) is app and got.named("docs") is docs


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(FILE)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", 2, "format must be 1"),
        ("default", "nope", "default 'nope' is not one of repos (app, docs)"),
        ("repos.app.url", "ext::sh -c touch% /tmp/x", "repos.app.url: url 'ext::sh"),
        ("repos.app.url", "fd::3", "transport helpers"),
        ("repos.app.url", "-oProxyCommand=x", "must not be empty, start with '-'"),
        ("repos.app.url", "http://git.example.com/a.git", "the scheme must be ssh, https or file"),
        ("repos.app.url", KeyError, "repos.app.url is missing"),
        ("repos.app.mirror", "relative/app.git", "repos.app.mirror 'relative/app.git' must be an"),
        ("repos.app.ref", "--upload-pack=touch /tmp/x", "repos.app.ref: ref '--upload-pack"),
        ("repos.app.setup", "npm ci", "repos.app.setup must be a list"),
        ("repos.app.setup", ["npm", 1], "repos.app.setup must be a list of strings"),
        ("repos.app.copy", [{"from": "/x", "to": "../x"}], "repos.app.copy[0].to '../x' must"),
        ("repos.app.copy", [{"from": "/x", "to": ".git/hooks/x"}], "must be a path inside"),
        ("repos.app.push", "yes", "repos.app.push must be true or false"),
        ("repos.app.push", False, "repos.app.pull_request needs push: true"),
        ("repos.app.pull_request", {"api": "http://gh.example", "repo": "a/b"}, "must be an https"),
        ("repos.app.pull_request", {"api": "https://a", "repo": "../b"}, "must be owner/name"),
        ("repos.app.retain_s", -1, "repos.app.retain_s must be a number of seconds"),
        ("repos.app.retain_s", True, "repos.app.retain_s must be a number"),
        ("repos", {"../x": {}}, "repos: repository name '../x' must be"),
        ("repos", [], "repos must be an object"),
    ],
)
def test_a_bad_file_names_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(repos.FileError) as e:
        repos.parse(_with(path, value))
    assert message in str(e.value)


def test_a_bad_file_stops_the_poller_naming_the_variable(tmp_path: Path) -> None:
    bad = tmp_path / "repos.json"
    bad.write_text(json.dumps(_with("repos.app.url", "ext::sh")))
    env = {"WORKER_ID": "w1", "NATS_URL": "nats://127.0.0.1:1", "MODEL_BACKEND": "claude"}
    with pytest.raises(config.ConfigError, match=r"^REPOS_FILE=.*repos\.app\.url: url 'ext::sh'"):
        config.load(env | {"REPOS_FILE": str(bad)})
    bad.write_text("{")
    with pytest.raises(config.ConfigError, match=r"^REPOS_FILE=.*: not JSON"):
        config.load(env | {"REPOS_FILE": str(bad)})
    good = tmp_path / "good.json"
    good.write_text(json.dumps(FILE))
    cfg = config.load(env | {"REPOS_FILE": str(good), "WORK_BASE": "/w"})
    assert cfg.worktrees == Path("/var/lib/fleet/w1/worktrees") and cfg.repos.default == "app"


@pytest.mark.parametrize(
    "ref",
    ["main", "feature/x-1", "refs/heads/main", "refs/tags/v1.2", "v1.2.3", SHA, "HEAD", "é"],
)
def test_refs_git_takes_as_refs(ref: str) -> None:
    assert repos.check_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "--upload-pack=touch /tmp/x",
        "-x",
        "../x",
        "./x",
        "/etc/passwd",
        "a/../b",
        "a..b",
        "ext::sh -c x",
        "fd::3",
        "main:other",
        "a b",
        "a\nb",
        "a\x00b",
        "x.lock",
        "a/.hidden",
        "a/",
        "a//b",
        "a@{1}",
        "a~1",
        "a^",
        "a*",
        "a[b",
        "a\\b",
        "@",
        "",
        "x" * 256,
    ],
)
def test_refs_that_could_be_read_as_something_else_are_refused(ref: str) -> None:
    with pytest.raises(repos.RepoError):
        repos.check_ref(ref)


@pytest.mark.parametrize("name", ["../x", "-x", "a/b", ".x", "a b", "", "x" * 65, "a.b"])
def test_repository_names_are_words(name: str) -> None:
    with pytest.raises(repos.RepoError):
        repos.check_name(name)


def test_a_task_naming_code_is_parsed_and_checked() -> None:
    task = parse_task(
        json.dumps(
            {"task_id": "t1", "instructions": "x", "repo": "app", "ref": "main", "base": SHA}
        ).encode(),
        10**6,
    )
    assert not isinstance(task, Rejection)
    assert (task.repo, task.ref, task.base) == ("app", "main", SHA)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"repo": "../app"}, "repository name '../app' must be"),
        ({"repo": "app", "ref": "--upload-pack=x"}, "ref '--upload-pack=x' starts with '-'"),
        ({"repo": "app", "ref": "ext::sh"}, "ref 'ext::sh' holds a character"),
        ({"repo": "app", "base": "HEAD"}, "base 'HEAD' must be a full commit id"),
        ({"repo": "app", "base": SHA.upper()}, "must be a full commit id"),
        ({"repo": 1}, "repo must be a string"),
        ({"repo": "app", "ref": ["main"]}, "ref must be a string"),
    ],
)
def test_a_task_naming_code_badly_is_rejected_with_its_id(
    fields: dict[str, Any], reason: str
) -> None:
    task = parse_task(json.dumps({"task_id": "t1", "instructions": "x", **fields}).encode(), 10**6)
    assert isinstance(task, Rejection) and task.task_id == "t1"
    assert reason in task.reason


def test_the_file_apply_renders_is_the_file_the_poller_reads() -> None:
    """Every REPOS_FILE of the example fleet, as fleetctl renders it (the golden files),
    parses, and says what fleet.yaml says."""
    from fleetctl.reconcile.desired.build import desired_state
    from fleetctl.reconcile.inputs import gather
    from tests.support.example import example_fleet

    fleet = example_fleet()
    rendered = {
        spec.path: spec.content
        for state in desired_state(fleet, gather(fleet)).hosts.values()
        for spec in state.files
        if spec.path.endswith("/repos.json")
    }
    assert rendered, "the example fleet has a worker with a repository"
    for path, content in rendered.items():
        got = repos.parse(json.loads(content))
        worker = next(w for w in fleet.workers if f"/{w.id}/" in path)
        assert got.default == worker.repo
        for name, repo in got.repos.items():
            declared = fleet.repos[name]
            assert (repo.url, repo.ref, repo.setup, repo.check) == (
                declared.url,
                declared.ref,
                declared.setup,
                declared.check,
            )
            assert repo.mirror == Path(f"/var/lib/fleet/repos/{name}.git")
            assert repo.gitconfig == Path(f"/etc/fleet/repos/{name}/gitconfig")
