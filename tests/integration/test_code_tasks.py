"""Tasks on a repository, end to end on one machine: `task send --repo/--ref` pins one commit
for every target, real pollers (the STAND-IN command CLI editing files as its directive
says) change their own worktrees of it, and `results` shows, compares, prints and applies the
changes; the Python client the same. The repository is a local upstream (file://); each
poller's REPOS_FILE is the one fleetctl renders for it and its mirror is made as
provisioning makes it (tests/support/taskfleet.py). Reached as a coordinator elsewhere would:
FLEETCTL_NATS_URL/_CREDS with the publisher's creds."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.tasks.client import ChangeError, Client
from tests.support import gitrepos
from tests.support.gitrepos import Upstream, git
from tests.support.poller_harness import directive
from tests.support.taskfleet import FLEETCTL, TaskFleet, task_fleet

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]
EDITS = directive(
    append_by_worker={"w1": {"a.txt": "good by w1\n"}, "w2": {"a.txt": "bad by w2\n"}},
    files={"shared.txt": "same\n"},
)


class CodeFleet:
    def __init__(self, tf: TaskFleet, up: Upstream, root: Path) -> None:
        self.tf, self.up, self.root = tf, up, root

    def clone(self, name: str) -> Path:
        path = self.root / name
        git(self.root, "clone", "-q", self.up.url, str(path))
        return path

    def results(self, task_id: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.tf.fleetctl("results", task_id, *args)


@pytest.fixture
def cf(tmp_path: Path) -> Iterator[CodeFleet]:
    up = gitrepos.upstream(tmp_path, {"a.txt": "one\n", "b.txt": "bee\n"})
    repos = {"app": {"url": up.url, "ref": "main", "check": ["sh", "-c", "grep -q good a.txt"]}}
    workers: dict[str, dict[str, Any]] = {"w1": {"repo": "app"}, "w2": {"repo": "app"}, "w3": {}}
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    with task_fleet(fleet_dir, workers, top={"repos": repos}, repos=tmp_path / "host") as tf:
        yield CodeFleet(tf, up, tmp_path)


def _send(cf: CodeFleet, *args: str) -> subprocess.CompletedProcess[str]:
    return cf.tf.fleetctl("task", "send", *args, "--wait", "--json", timeout=90)


def test_one_base_for_every_target_and_the_changes_shown_compared_and_applied(
    cf: CodeFleet,
) -> None:
    base = cf.up.head()
    done = _send(cf, EDITS, "--to", "w1", "--to", "w2", "--repo", "app", "--id", "t1")
    assert done.returncode == 0, done.stderr
    results = {r["worker_id"]: r for r in json.loads(done.stdout)["results"]}
    for wid, mine in (("w1", "good by w1"), ("w2", "bad by w2")):
        code = results[wid]["code"]
        assert (code["repo"], code["base"], code["branch"]) == ("app", base, f"af/t1/{wid}")
        assert [f["path"] for f in code["files"]] == ["a.txt", "shared.txt"]
        assert f"+{mine}\n" in code["patch"]
    assert results["w1"]["code"]["check"]["passed"] is True
    assert results["w2"]["code"]["check"]["passed"] is False

    # The record names the repository and the ref it was resolved from.
    as_json = json.loads(cf.results("t1", "--json").stdout)
    assert (as_json["record"]["repo"], as_json["record"]["ref"]) == ("app", "main")
    stored = {r["worker_id"]: r["code"] for r in as_json["results"]}
    assert stored == {w: results[w]["code"] for w in ("w1", "w2")}  # `code` as stored

    # Side by side: each worker's diffstat and check.
    table = cf.results("t1")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("change    2 files +2 -0") == 2
    assert "check     passed" in table.stdout and "check     failed (exit 1)" in table.stdout
    assert "branch    af/t1/w1" in table.stdout

    # --diff: each worker's patch, coloured where colour is on.
    plain = cf.results("t1", "--diff")
    assert "== w1: 2 files +2 -0, check passed" in plain.stdout
    assert "+good by w1" in plain.stdout and "+bad by w2" in plain.stdout
    coloured = subprocess.run(
        [FLEETCTL, "results", "t1", "--diff"],
        capture_output=True,
        text=True,
        env=cf.tf.env() | {"FORCE_COLOR": "1"},
        timeout=60,
    )
    assert "\x1b[32m+good by w1\x1b[0m" in coloured.stdout, coloured.stdout
    assert "\x1b[31m-\x1b[0m" not in coloured.stdout  # nothing was deleted

    # --diff A B: only where they differ (shared.txt is the same in both).
    pair = cf.results("t1", "--diff", "w1", "w2")
    assert pair.returncode == 0, pair.stderr
    assert pair.stdout.splitlines() == [
        "--- w1: a.txt",
        "+++ w2: a.txt",
        "@@ -2,4 +2,4 @@",
        " +++ b/a.txt",
        " @@ -1 +1,2 @@",
        "  one",
        "-+good by w1",
        "++bad by w2",
    ], pair.stdout

    # --patch: what `git apply` takes, byte for byte the stored patch.
    patch = cf.results("t1", "--patch", "w1")
    assert patch.returncode == 0 and patch.stdout == results["w1"]["code"]["patch"]
    checkout = cf.clone("checkout")

    # --diff A B --to DIR: the files they leave compared, in a checkout that has the base.
    files = cf.results("t1", "--diff", "w1", "w2", "--to", str(checkout))
    assert files.returncode == 0, files.stderr
    assert [x for x in files.stdout.splitlines() if not x.startswith("index ")] == [
        "diff --git w1/a.txt w2/a.txt",
        "--- w1/a.txt",
        "+++ w2/a.txt",
        "@@ -1,2 +1,2 @@",
        " one",
        "-good by w1",
        "+bad by w2",
    ], files.stdout
    assert git(checkout, "status", "--porcelain") == ""
    git(checkout, "apply", "--check", "-", input=patch.stdout)

    # --apply: into a clean checkout at the base; staged, not committed.
    applied = cf.results("t1", "--apply", "w2", "--to", str(checkout))
    assert applied.returncode == 0, applied.stderr
    assert (checkout / "a.txt").read_text() == "one\nbad by w2\n"
    assert git(checkout, "diff", "--cached", "--name-only").split() == ["a.txt", "shared.txt"]

    # A dirty checkout is refused, with the command that fixes it, and left as it was.
    refused = cf.results("t1", "--apply", "w1", "--to", str(checkout))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: {checkout} has uncommitted changes (commit or stash them first: "
        f"git -C {checkout} stash)"
    )
    assert (checkout / "a.txt").read_text() == "one\nbad by w2\n"

    # A checkout at another commit is refused, naming the base to check out.
    moved = cf.clone("moved")
    newer = cf.up.commit({"b.txt": "newer\n"})
    git(moved, "pull", "-q")
    refused = cf.results("t1", "--apply", "w1", "--to", str(moved))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: {moved} is at {newer[:12]}; w1's change is against {base[:12]} "
        f"(git -C {moved} checkout --detach {base})"
    )


def test_task_send_refuses_code_it_cannot_name_and_sends_nothing(cf: CodeFleet) -> None:
    before = cf.tf.stored_tasks()
    cases = {
        ("--repo", "nope"): "--repo nope: no such repository in fleet.yaml repos: (it has: app)",
        ("--repo", "../app"): "--repo: repository name '../app' must be",
        ("--repo", "app", "--ref=--upload-pack=touch /tmp/x"): "--ref: ref '--upload-pack=",
        ("--repo", "app", "--ref", "ext::sh -c x"): "--ref: ref 'ext::sh -c x' holds",
        ("--repo", "app", "--ref", "no-such"): f"ref 'no-such' is not in app ({cf.up.url})",
    }
    for args, message in cases.items():
        done = cf.tf.fleetctl("task", "send", "x", "--to", "w1", *args)
        assert done.returncode == 1, (args, done.stdout)
        assert done.stderr.startswith(f"error: {message}"), (args, done.stderr)
        assert "nothing was sent" in done.stderr
    lacking = cf.tf.fleetctl("task", "send", "x", "--to", "w1", "--to", "w3", "--repo", "app")
    assert lacking.returncode == 1
    assert "--repo app: w3 may not work on it" in lacking.stderr
    assert cf.tf.stored_tasks() == before


def test_the_python_client_sends_on_a_ref_and_returns_the_changes(cf: CodeFleet) -> None:
    first = cf.up.head()
    git(cf.up.checkout, "tag", "v1")
    git(cf.up.checkout, "push", "-q", "origin", "v1")
    cf.up.commit({"a.txt": "later\n"})
    env = cf.tf.env()
    with Client.open(
        cf.tf.fleet_path, server=env["FLEETCTL_NATS_URL"], creds=env["FLEETCTL_NATS_CREDS"]
    ) as client:
        code = client.code(["w1", "w2"], "app", "v1")
        assert code is not None and (code.repo, code.ref, code.base) == ("app", "v1", first)
        sent = client.send(EDITS, to=["w1", "w2"], repo="app", ref="v1", task_id="py1")
        found = {r.worker_id: r for r in client.wait(sent, timeout=60)}
        assert {w: r.body["code"]["base"] for w, r in found.items()} == {"w1": first, "w2": first}
        patch = client.patch("py1", "w1")
        assert patch == found["w1"].body["code"]["patch"].encode()
        assert client.compare("py1", "w2", "w1")[-2:] == ["-+bad by w2", "++good by w1"]
        assert client.compare("py1", "w1", "w1") == []
        there = cf.clone("py-compare")
        assert client.compare("py1", "w2", "w1", there)[-2:] == ["-bad by w2", "+good by w1"]
        checkout = cf.clone("py-checkout")
        git(checkout, "checkout", "-q", "--detach", first)
        change = client.apply("py1", "w1", checkout)
        assert change.worker_id == "w1" and (checkout / "a.txt").read_text() == "one\ngood by w1\n"
        with pytest.raises(ChangeError, match="has uncommitted changes"):
            client.apply("py1", "w2", checkout)
        # Without --repo, workers sharing a default repository are pinned to its ref's tip.
        default = client.code(["w1", "w2"])
        assert default is not None and (default.repo, default.base) == ("app", cf.up.head())
        assert client.code(["w1", "w3"]) is None
