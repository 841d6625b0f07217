"""A worker's change as its result carries it: printed, compared, applied to a real local
checkout, and each refusal with the command that fixes it (the checkout left as it was)."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetctl.tasks import changes
from fleetctl.tasks.messages import Result
from tests.support import gitrepos
from tests.support.gitrepos import Upstream, git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def up(tmp_path: Path) -> Upstream:
    return gitrepos.upstream(tmp_path, {"a.txt": "one\n", "b.txt": "bee\n"})


def _change(
    up: Upstream, tmp: Path, worker: str, files: dict[str, str], **code: Any
) -> changes.Change:
    """The change a worker would report for `files` written on the upstream's head."""
    work = tmp / f"work-{worker}"
    git(tmp, "clone", "-q", up.url, str(work))
    for path, text in files.items():
        (work / path).write_text(text)
    git(work, "add", "-A")
    patch = git(work, "diff", "--cached", "--binary", "--full-index", "HEAD") + "\n"
    body = {"base": up.head(), "branch": f"af/t/{worker}", "patch": patch, "pushed": False}
    return changes.Change(worker, body | code)


def test_of_names_a_missing_result_or_one_without_code() -> None:
    results = [
        Result("w1", "completed", {"code": {"patch": ""}}),
        Result("w2", "completed", {}),
        Result("w3", "running", {}),
    ]
    assert changes.of(results, "w1").worker_id == "w1"
    for worker, message in (
        ("w2", "w2's result (completed) carries no change: its task worked on no repository"),
        ("w3", "w3 has no result yet (running)"),
        ("w9", "no result from w9 for this task (results from: w1, w2, w3)"),
    ):
        with pytest.raises(changes.ChangeError) as e:
            changes.of(results, worker)
        assert str(e.value) == message


def test_compare_shows_only_where_two_changes_differ(up: Upstream, tmp_path: Path) -> None:
    a = _change(up, tmp_path, "w1", {"a.txt": "one\nA\n", "b.txt": "same\n"})
    b = _change(up, tmp_path, "w2", {"a.txt": "one\nB\n", "b.txt": "same\n", "c.txt": "new\n"})
    lines = changes.compare(a, b)
    assert "--- w1: a.txt" in lines and "-+A" in lines and "++B" in lines
    assert "--- w1: c.txt (not changed)" in lines and "++new" in lines
    assert not [x for x in lines if "b.txt" in x]  # the same in both: not shown
    assert changes.compare(a, a) == []


def test_compare_in_a_checkout_shows_how_the_files_they_leave_differ(
    up: Upstream, tmp_path: Path
) -> None:
    a = _change(up, tmp_path, "w1", {"a.txt": "one\nA\n", "b.txt": "same\n"})
    b = _change(up, tmp_path, "w2", {"a.txt": "one\nB\n", "b.txt": "same\n", "c.txt": "new\n"})
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", up.url, str(checkout))
    objects = sorted(p.name for p in (checkout / ".git" / "objects").rglob("*"))
    lines = changes.compare_in(a, b, checkout)
    assert [x for x in lines if not x.startswith("index ")] == [
        "diff --git w1/a.txt w2/a.txt",
        "--- w1/a.txt",
        "+++ w2/a.txt",
        "@@ -1,2 +1,2 @@",
        " one",
        "-A",
        "+B",
        "diff --git w1/c.txt w2/c.txt",
        "new file mode 100644",
        "--- /dev/null",
        "+++ w2/c.txt",
        "@@ -0,0 +1 @@",
        "+new",
    ]
    assert changes.compare_in(a, a, checkout) == []
    nothing = changes.Change("w3", {"base": up.head(), "branch": None, "patch": ""})
    assert "+++ w1/a.txt" in changes.compare_in(nothing, a, checkout)
    # Nothing in the checkout changed: no object written, no index touched.
    assert sorted(p.name for p in (checkout / ".git" / "objects").rglob("*")) == objects
    assert git(checkout, "status", "--porcelain") == ""

    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "init", "-q", str(elsewhere))
    with pytest.raises(changes.ChangeError) as e:
        changes.compare_in(a, b, elsewhere)
    assert str(e.value) == f"{elsewhere} does not have w1's base {up.head()[:12]}"
    assert e.value.fix == f"git -C {elsewhere} fetch"
    with pytest.raises(changes.ChangeError, match="is not a git checkout"):
        changes.compare_in(a, b, tmp_path / "nowhere")
    cut = changes.Change("w2", dict(b.code, patch_truncated=True))
    with pytest.raises(changes.ChangeError, match="w2's patch was cut to fit its result"):
        changes.compare_in(a, cut, checkout)


def test_apply_refuses_then_applies(up: Upstream, tmp_path: Path) -> None:
    change = _change(up, tmp_path, "w1", {"a.txt": "one\nmine\n"})
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", up.url, str(checkout))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(changes.ChangeError, match="is not a git checkout") as e:
        changes.apply(change, plain)
    assert e.value.fix == "give one with --to DIR"
    cut = changes.Change("w1", dict(change.code, patch_truncated=True, pushed=True))
    with pytest.raises(changes.ChangeError, match="w1's patch was cut to fit its result") as e:
        changes.apply(cut, checkout, "file:///srv/app.git")
    assert e.value.fix == "the whole change is on its branch: git fetch file:///srv/app.git af/t/w1"
    (checkout / "b.txt").write_text("dirty\n")
    with pytest.raises(changes.ChangeError, match="has uncommitted changes") as e:
        changes.apply(change, checkout)
    assert e.value.fix == f"commit or stash them first: git -C {checkout} stash"
    git(checkout, "checkout", "-q", "b.txt")
    later = up.commit({"b.txt": "later\n"})
    git(checkout, "pull", "-q")
    with pytest.raises(changes.ChangeError) as e:
        changes.apply(change, checkout)
    assert (
        str(e.value) == f"{checkout} is at {later[:12]}; w1's change is against {change.base[:12]}"
    )
    assert e.value.fix == f"git -C {checkout} checkout --detach {change.base}"
    assert git(checkout, "status", "--porcelain") == ""  # every refusal left it as it was
    git(checkout, "checkout", "-q", "--detach", change.base)
    changes.apply(change, checkout)
    assert (checkout / "a.txt").read_text() == "one\nmine\n"
    assert git(checkout, "diff", "--cached", "--name-only") == "a.txt"


def test_a_base64_patch_is_the_bytes_it_encodes() -> None:
    raw = b"diff --git a/x b/x\n\xff\n"
    body = {"patch": base64.b64encode(raw).decode(), "patch_encoding": "base64"}
    assert changes.Change("w1", body).patch == raw
