"""The publisher's side of a task's code: which repository, and the one commit every target
starts from (`git ls-remote` against a real local upstream), refused with the option named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.tasks import code
from tests.support import gitrepos
from tests.support.gitrepos import Upstream, git

SERVERS = {
    "version": 1,
    "servers": [
        {"name": "broker", "address": "192.0.2.1", "roles": ["broker-host"]},
        {"name": "node-1", "address": "192.0.2.2", "roles": ["worker-host"]},
    ],
}


def _fleet(tmp_path: Path, up: Upstream) -> Fleet:
    body = {
        "version": 1,
        "repos": {"app": {"url": up.url, "ref": "main"}, "docs": {"url": up.url}},
        "workers": [
            {
                "worker_id": "w1",
                "llm": "command",
                "command": ["true"],
                "host": "node-1",
                "repo": "app",
            },
            {
                "worker_id": "w2",
                "llm": "command",
                "command": ["true"],
                "host": "node-1",
                "repo": "app",
            },
            {
                "worker_id": "w3",
                "llm": "command",
                "command": ["true"],
                "host": "node-1",
                "repo": "docs",
            },
            {"worker_id": "w4", "llm": "command", "command": ["true"], "host": "node-1"},
        ],
    }
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(body))
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump(SERVERS))
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


@pytest.fixture
def up(tmp_path: Path) -> Upstream:
    if shutil.which("git") is None:
        pytest.skip("needs git")
    return gitrepos.upstream(tmp_path, {"a.txt": "one\n"})


def test_a_ref_is_resolved_once_to_the_commit_it_names_now(tmp_path: Path, up: Upstream) -> None:
    fleet = _fleet(tmp_path, up)
    first = up.head()
    git(up.checkout, *gitrepos.IDENT, "tag", "-a", "-m", "annotated", "v1")
    git(up.checkout, "push", "-q", "origin", "v1")
    git(up.checkout, "push", "-q", "origin", "HEAD:refs/heads/v1-branch")
    second = up.commit({"a.txt": "two\n"})
    app = fleet.repos["app"]
    assert code.resolve(app, None) == code.Code("app", "main", second)  # the repository's ref
    assert code.resolve(app, "v1") == code.Code("app", "v1", first)  # the tag's commit
    assert code.resolve(app, "refs/tags/v1").base == first
    assert code.resolve(app, "refs/heads/main").base == second
    assert code.resolve(fleet.repos["docs"], None).base == second  # no ref: the remote's HEAD
    assert code.resolve(app, "0" * 40).base == "0" * 40  # a full commit id: no lookup
    with pytest.raises(code.CodeError, match=rf"^ref 'nope' is not in app \({up.url}\)$"):
        code.resolve(app, "nope")


def test_the_targets_must_all_have_the_repository(tmp_path: Path, up: Upstream) -> None:
    fleet = _fleet(tmp_path, up)
    app = fleet.repos["app"]
    assert code.choose(fleet, ["w1", "w2"], "app", None) == (app, None)
    assert code.choose(fleet, ["w1", "w2"], None, "v1") == (app, "v1")  # their shared default
    assert code.choose(fleet, ["w1", "w3"], None, None) is None  # defaults differ: none pinned
    assert code.choose(fleet, ["w4"], None, None) is None
    refused = {
        ("w1", "w3"): ("app", None, "--repo app: w3 may not work on it"),
        ("w1",): ("web", None, "--repo web: no such repository in fleet.yaml repos:"),
        ("w2",): ("-x", None, "--repo: repository name '-x' must be"),
        ("w4",): ("app", "../x", "--ref: ref '../x' "),
    }
    for workers, (repo, ref, message) in refused.items():
        with pytest.raises(code.CodeError) as e:
            code.choose(fleet, list(workers), repo, ref)
        assert str(e.value).startswith(message), e.value
    with pytest.raises(code.CodeError, match="--ref needs --repo"):
        code.choose(fleet, ["w1", "w3"], None, "main")


@pytest.mark.parametrize(
    ("listing", "ref", "commit"),
    [
        ("a\trefs/heads/x\nb\trefs/tags/x\n", "x", "a"),  # a branch before a tag
        ("b\trefs/tags/x\nc\trefs/tags/x^{}\n", "x", "c"),  # an annotated tag's commit
        ("a\trefs/heads/feature/x\n", "x", None),  # ls-remote's tail match is not a match
        ("d\tHEAD\na\trefs/heads/main\n", "HEAD", "d"),
        ("", "main", None),
    ],
)
def test_pick_reads_ls_remote_as_git_resolves_a_ref(
    listing: str, ref: str, commit: str | None
) -> None:
    assert code.pick(listing, ref) == commit
