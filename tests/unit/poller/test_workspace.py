"""A task's workspace against real git: a local upstream (file://), the host's bare mirror and
the worker's repository file (tests/support/gitrepos.py), driven step by step as the delivery
flow drives it; the agent's edits are made by the test. Each way a step can end, as data.
The same flow through a real poller and nats-server: tests/integration/test_poller_code.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from poller import change, config, retention, worktree
from poller.logs import Logger
from poller.messages import Rejection, Task, parse_task
from poller.workspace import Closed, Later, Refuse, Unusable, Workspace, Workspaces
from tests.support import gitrepos
from tests.support.forge_mock import ForgeMock
from tests.support.gitrepos import git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
T = TypeVar("T")
FILES = {"a.txt": "one\ntwo\nthree\n", "old.txt": "to be renamed\n" * 5, ".gitignore": "build/\n"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Rig:
    """An upstream with one commit, an empty mirror, a worker w1 with repository `app`."""

    def __init__(self, tmp: Path, **fields: Any) -> None:
        self.tmp = tmp
        self.up = gitrepos.upstream(tmp, FILES)
        self.mirror = gitrepos.mirror(tmp)
        self.secret = tmp / "secret.env"
        self.secret.write_text("TOKEN=s3cret\n")
        self.worktrees = tmp / "w1" / "worktrees"
        self.fields = fields
        self.reload()

    def reload(self, **more: Any) -> None:
        self.fields |= more
        entry = gitrepos.repo_entry(self.up, self.mirror, **self.fields)
        path = gitrepos.repos_file(
            self.tmp / "repos.json",
            {"app": entry},
            worktrees=self.worktrees,
            default=self.fields.pop("_default", None),
            min_free_bytes=self.fields.pop("_min_free", 0),
        )
        env = {
            "WORKER_ID": "w1",
            "NATS_URL": "nats://127.0.0.1:1",
            "MODEL_BACKEND": "command",
            "COMMAND_ARGV": '["true"]',
            "WORK_BASE": str(self.tmp / "w1"),
            "REPOS_FILE": str(path),
            "KILL_GRACE": "1",
        }
        self.cfg = config.load(env)
        self.log_path = self.tmp / "poller.log"
        self.spaces = Workspaces(
            self.cfg, Logger("debug", worker_id="w1"), os.environ, dict(os.environ), None
        )

    def task(self, task_id: str = "t1", **fields: Any) -> Task:
        body = {"task_id": task_id, "instructions": "Fix the thing\nin detail", **fields}
        task = parse_task(json.dumps(body).encode(), 10**6)
        assert not isinstance(task, Rejection), task
        return task

    def open(self, task: Task) -> Workspace | Refuse | Later | Unusable:
        return run(self.spaces.open(task, {task.task_id}))

    def opened(self, task: Task) -> Workspace:
        ws = self.open(task)
        assert isinstance(ws, Workspace), ws
        return ws

    def close(self, ws: Workspace, task: Task, status: str = "completed") -> Closed:
        return run(self.spaces.close(ws, task, status))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_a_task_gets_a_fresh_locked_worktree_at_its_base(rig: Rig) -> None:
    base = rig.up.head()
    ws = rig.opened(rig.task(repo="app", base=base))
    assert ws.dir == rig.worktrees / "t1"
    assert git(ws.dir, "rev-parse", "HEAD") == base
    assert subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=ws.dir).returncode == 1
    assert git(ws.dir, "status", "--porcelain") == ""
    listed = git(rig.mirror, "worktree", "list", "--porcelain")
    assert f"worktree {ws.dir}\nHEAD {base}\ndetached\nlocked fleet task t1" in listed
    assert (ws.dir / "a.txt").read_text() == FILES["a.txt"]


def test_the_agents_change_comes_back_committed_on_its_branch(rig: Rig) -> None:
    base = rig.up.head()
    task = rig.task(repo="app", base=base)
    ws = rig.opened(task)
    (ws.dir / "a.txt").write_text("one\nTWO\nthree\nfour\n")  # 2 insertions, 1 deletion
    (ws.dir / "new.txt").write_text("new\n")
    git(ws.dir, "mv", "old.txt", "renamed.txt")  # an agent's `git mv`: staged, still committed
    (ws.dir / "build").mkdir()
    (ws.dir / "build" / "out.o").write_text("ignored\n")
    (ws.dir / "logo.bin").write_bytes(bytes(range(256)))
    closed = rig.close(ws, task)

    assert closed.failed is None
    code = closed.code
    assert code is not None
    head = code["head"]
    assert (code["repo"], code["base"], code["branch"], code["pushed"]) == (
        "app",
        base,
        "af/t1/w1",
        False,
    )
    assert head != base and git(rig.mirror, "rev-parse", "refs/heads/af/t1/w1") == head
    assert git(rig.mirror, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", head) == (
        "w1 <w1@fleet.invalid>|w1 <w1@fleet.invalid>|af: task t1\n\nFix the thing"
    )
    assert git(rig.mirror, "rev-parse", f"{head}^") == base
    assert code["files"] == [
        {"path": "a.txt", "status": "modified", "insertions": 2, "deletions": 1},
        {"path": "logo.bin", "status": "added", "insertions": 0, "deletions": 0, "binary": True},
        {"path": "new.txt", "status": "added", "insertions": 1, "deletions": 0},
        {
            "path": "renamed.txt",
            "status": "renamed",
            "insertions": 0,
            "deletions": 0,
            "from": "old.txt",
        },
    ]
    assert (code["insertions"], code["deletions"], code["patch_truncated"]) == (3, 1, False)
    assert (code["check"], code["setup"], code["pull_request_url"]) == (None, None, None)
    assert "phase" not in code and "error" not in code
    # The patch applies to a checkout of the base and gives the same tree as the branch.
    fresh = rig.tmp / "fresh"
    git(rig.tmp, "clone", "-q", rig.up.url, str(fresh))
    git(fresh, "apply", "--index", "-", input=code["patch"])
    assert git(fresh, "write-tree") == git(rig.mirror, "rev-parse", f"{head}^{{tree}}")


def test_nothing_changed_is_no_commit_and_no_branch(rig: Rig) -> None:
    base = rig.up.head()
    task = rig.task(repo="app", base=base)
    ws = rig.opened(task)
    (ws.dir / "build").mkdir()
    (ws.dir / "build" / "only-ignored").write_text("x")
    code = rig.close(ws, task).code
    assert code is not None
    assert (code["head"], code["branch"], code["files"], code["patch"]) == (base, None, [], "")
    assert git(rig.mirror, "for-each-ref", "refs/heads") == ""


def test_copied_files_are_placed_and_never_committed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.reload(
        copy=[{"from": str(rig.secret), "to": ".env"}, {"from": str(rig.secret), "to": "a.txt"}]
    )
    task = rig.task(repo="app", base=rig.up.head())
    ws = rig.opened(task)
    assert (ws.dir / ".env").read_text() == "TOKEN=s3cret\n"
    assert stat.S_IMODE((ws.dir / ".env").stat().st_mode) == 0o600
    assert (ws.dir / "a.txt").read_text() == "TOKEN=s3cret\n"  # over a tracked file, too
    (ws.dir / "new.txt").write_text("agent\n")
    code = rig.close(ws, task).code
    assert code is not None
    assert [f["path"] for f in code["files"]] == ["new.txt"]
    assert "s3cret" not in code["patch"]
    assert "s3cret" not in git(rig.mirror, "log", "-p", "af/t1/w1")


def test_setup_runs_before_the_agent_and_its_failure_ends_the_task(tmp_path: Path) -> None:
    rig = Rig(tmp_path, setup=["sh", "-c", "echo installing; test -f a.txt && touch build/ok"])
    (rig.up.checkout / "build").mkdir()
    task = rig.task(repo="app", base=rig.up.head())
    got = rig.open(task)
    assert isinstance(got, Unusable)
    assert got.reason == (
        "setup sh -c echo installing; test -f a.txt && touch build/ok failed (exit 1)"
    )
    assert got.code is not None and got.code["phase"] == "setup"
    assert got.code["setup"]["passed"] is False and got.code["setup"]["exit_code"] == 1
    assert got.code["setup"]["output_tail"].startswith("installing\n")
    assert "No such file or directory" in got.code["setup"]["output_tail"]
    # Setup that passes: its record is kept in the result's code.
    rig.reload(setup=["sh", "-c", "mkdir -p build && echo ok > build/ready"])
    ws = rig.opened(rig.task("t2", repo="app", base=rig.up.head()))
    assert ws.setup is not None and ws.setup.passed and (ws.dir / "build" / "ready").exists()
    assert ws.code["setup"] == {
        "passed": True,
        "exit_code": 0,
        "duration_s": ws.code["setup"]["duration_s"],
        "output_tail": "",
    }


def test_check_runs_after_a_completed_agent_and_is_reported(tmp_path: Path) -> None:
    rig = Rig(tmp_path, check=["sh", "-c", "echo checking; grep -q fixed a.txt"])
    base = rig.up.head()
    for task_id, text, passed in (("good", "fixed\n", True), ("bad", "broken\n", False)):
        task = rig.task(task_id, repo="app", base=base)
        ws = rig.opened(task)
        (ws.dir / "a.txt").write_text(text)
        closed = rig.close(ws, task)
        assert closed.failed is None and closed.code is not None
        check = closed.code["check"]
        assert (check["passed"], check["exit_code"]) == (passed, 0 if passed else 1)
        assert check["output_tail"] == "checking\n"
        assert closed.code["branch"] == f"af/{task_id}/w1"  # committed either way
    task = rig.task("failed", repo="app", base=base)
    ws = rig.opened(task)
    assert rig.close(ws, task, "failed").code["check"] is None  # type: ignore[index]


def test_what_the_check_writes_is_not_part_of_the_agents_change(tmp_path: Path) -> None:
    """The branch holds what the agent changed: the check runs on that commit, and its own
    files (caches, reports, a formatter's rewrite) are left out of it."""
    check = ["sh", "-c", "echo report > check-report.txt && echo reformatted >> a.txt"]
    rig = Rig(tmp_path, check=check)
    task = rig.task(repo="app", base=rig.up.head())
    ws = rig.opened(task)
    (ws.dir / "fix.txt").write_text("the fix\n")
    closed = rig.close(ws, task)
    assert closed.failed is None and closed.code is not None
    assert closed.code["check"]["passed"] is True
    assert [(f["path"], f["status"]) for f in closed.code["files"]] == [("fix.txt", "added")]
    assert git(rig.mirror, "ls-tree", "--name-only", "af/t1/w1").split() == [
        ".gitignore",
        "a.txt",
        "fix.txt",
        "old.txt",
    ]
    assert git(rig.mirror, "show", "af/t1/w1:a.txt") == FILES["a.txt"].rstrip("\n")
    assert (ws.dir / "check-report.txt").exists()  # the check did run in the worktree


def test_a_change_that_cannot_be_committed_fails_the_task_saying_why(rig: Rig) -> None:
    base = rig.up.head()
    task = rig.task("huge", repo="app", base=base)
    ws = rig.opened(task)
    with (ws.dir / "dump.bin").open("wb") as f:  # sparse: no disk used
        f.truncate(change.MAX_FILE_BYTES + 1)
    closed = rig.close(ws, task)
    assert closed.failed == (
        "the change could not be committed: dump.bin is 104,857,601 bytes, more than the "
        "104,857,600 a commit may hold (ignore it in .gitignore, or keep it out of the worktree)"
    )
    assert closed.code is not None and closed.code["phase"] == "commit"
    assert closed.code["branch"] is None

    task = rig.task("broken", repo="app", base=base)
    ws = rig.opened(task)
    (ws.dir / "a.txt").write_text("changed\n")
    index = Path(git(ws.dir, "rev-parse", "--git-path", "index"))
    index = index if index.is_absolute() else ws.dir / index
    index.write_bytes(b"DIRC garbage")
    closed = rig.close(ws, task)
    assert closed.failed is not None
    assert closed.failed.startswith("the change could not be committed: git status failed (128)")
    assert "index" in closed.failed


def test_what_git_makes_in_the_shared_mirror_is_the_groups_from_its_mkdir_on(rig: Rig) -> None:
    """Workers of one repository on a host are different users sharing its mirror. git makes a
    directory there (`refs/heads/af/<task_id>/`, an objects fan-out) with mkdir, then gives it
    to the group (core.sharedRepository) a moment later; under the unit's UMask=0077 another
    worker's git committing the same task in that moment cannot enter it. The poller's git
    runs with umask 007, so the directory is the group's from the start. Seen here with the
    mirror not shared, so only the umask decides."""
    git(rig.mirror, "config", "--unset", "core.sharedRepository")
    task = rig.task(repo="app", base=rig.up.head())
    ws = rig.opened(task)
    (ws.dir / "a.txt").write_text("mine\n")
    old = os.umask(0o077)
    try:
        assert rig.close(ws, task).failed is None
    finally:
        os.umask(old)
    for made in ("refs/heads/af", "refs/heads/af/t1", "logs/refs/heads/af/t1"):
        mode = stat.S_IMODE((rig.mirror / made).stat().st_mode)
        assert mode & 0o070 == 0o070, f"{made}: {oct(mode)}"


def test_an_existing_branch_with_other_content_is_not_overwritten(rig: Rig) -> None:
    base = rig.up.head()
    git(rig.mirror, "fetch", "-q", rig.up.url, "+refs/heads/*:refs/remotes/origin/*")
    git(rig.mirror, "update-ref", "refs/heads/af/t1/w1", base)
    task = rig.task(repo="app", base=base)
    ws = rig.opened(task)
    (ws.dir / "a.txt").write_text("mine\n")
    closed = rig.close(ws, task)
    assert closed.failed is not None and closed.code is not None
    assert closed.failed.startswith(
        f"the change could not be committed: branch af/t1/w1 already exists in the mirror at "
        f"{base[:12]}"
    )
    assert git(rig.mirror, "rev-parse", "refs/heads/af/t1/w1") == base


def test_the_patch_is_cut_at_a_file_boundary(rig: Rig) -> None:
    task = rig.task(repo="app", base=rig.up.head())
    ws = rig.opened(task)
    line = "x" * 99 + "\n"
    for i in range(6):  # 6 files of 60 KiB: about 360 KiB of patch, the cap is 256 KiB
        (ws.dir / f"big{i}.txt").write_text(line * 600)
    code = rig.close(ws, task).code
    assert code is not None and code["patch_truncated"] is True
    patch = code["patch"]
    assert 0 < len(patch.encode()) <= change.PATCH_CAP
    assert patch.count("diff --git ") == 4 and patch.endswith(line)
    assert len(code["files"]) == 6 and code["insertions"] == 3600  # the counts are whole
    fresh = rig.tmp / "fresh"
    git(rig.tmp, "clone", "-q", rig.up.url, str(fresh))
    git(fresh, "apply", "--check", "-", input=patch)


def test_what_a_task_may_not_name_is_refused_before_anything_runs(rig: Rig) -> None:
    assert rig.open(rig.task(repo="docs")) == Refuse(
        "repository 'docs' is not declared for this worker (it has: app)"
    )
    missing = "f" * 40
    assert rig.open(rig.task(repo="app", base=missing)) == Refuse(
        f"commit {missing} is not in app ({rig.up.url})"
    )
    assert rig.open(rig.task(repo="app", ref="nope")) == Refuse(
        f"ref 'nope' is not in app ({rig.up.url})"
    )
    assert not (rig.worktrees / "t1").exists()


def test_a_ref_or_the_remotes_head_is_resolved_by_the_poller(rig: Rig) -> None:
    first = rig.up.head()
    git(rig.up.checkout, "tag", "v1")
    git(rig.up.checkout, "push", "-q", "origin", "v1")
    second = rig.up.commit({"a.txt": "newer\n"})
    assert rig.opened(rig.task("head", repo="app")).base == second
    assert rig.opened(rig.task("tag", repo="app", ref="v1")).base == first
    assert rig.opened(rig.task("branch", repo="app", ref="refs/heads/main")).base == second


def test_an_unreachable_remote_is_tried_again_later(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    shutil.rmtree(rig.up.bare)
    got = rig.open(rig.task(repo="app", base="e" * 40))
    assert isinstance(got, Later) and got.reason.startswith("fetching app: git fetch failed")


def test_a_task_without_a_repository_gets_an_empty_directory_removed_after(rig: Rig) -> None:
    task = rig.task("plain")
    ws = rig.opened(task)
    assert ws.repo is None and ws.dir == rig.worktrees / "plain" and list(ws.dir.iterdir()) == []
    (ws.dir / "scratch").write_text("x")
    assert rig.close(ws, task) == Closed(None)
    run(rig.spaces.leave(ws, set()))
    assert not ws.dir.exists() and worktree.records(rig.worktrees) == []


def test_the_default_repository_serves_a_task_that_names_none(tmp_path: Path) -> None:
    rig = Rig(tmp_path, _default="app")
    ws = rig.opened(rig.task())
    assert ws.repo is not None and ws.repo.name == "app" and ws.base == rig.up.head()


def test_concurrent_tasks_share_one_fetch_and_get_their_own_worktrees(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    shim = tmp_path / "bin"
    shim.mkdir()
    log = tmp_path / "git.log"
    real = shutil.which("git")
    (shim / "git").write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    spaces = Workspaces(
        rig.cfg,
        Logger("debug", worker_id="w1"),
        {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"},
        dict(os.environ),
        None,
    )
    base = rig.up.head()
    tasks = [rig.task(f"c{i}", repo="app", base=base) for i in range(3)]

    async def together() -> list[Any]:
        return await asyncio.gather(*(spaces.open(t, {t.task_id}) for t in tasks))

    opened = run(together())
    assert all(isinstance(w, Workspace) for w in opened), opened
    assert [w.dir for w in opened] == [rig.worktrees / f"c{i}" for i in range(3)]
    assert log.read_text().split().count("fetch") == 1


def test_a_redelivered_task_starts_from_a_fresh_worktree(rig: Rig) -> None:
    base = rig.up.head()
    ws = rig.opened(rig.task(repo="app", base=base))
    (ws.dir / "half-done.txt").write_text("the killed run's work\n")
    (ws.dir / "a.txt").write_text("half\n")
    # The poller was killed here: its record names a process that is gone.
    place = worktree.load(rig.worktrees, "t1")
    assert place is not None
    place.poller_pid, place.poller_start = 999999, "1"
    worktree.save(rig.worktrees, place)
    again = rig.opened(rig.task(repo="app", base=base))
    assert again.dir == ws.dir and not (again.dir / "half-done.txt").exists()
    assert git(again.dir, "status", "--porcelain") == ""
    listed = git(rig.mirror, "worktree", "list", "--porcelain")
    assert listed.count("\nlocked ") == 1  # the old entry went with the old worktree


def test_the_sweep_removes_finished_worktrees_after_retain_and_orphans(tmp_path: Path) -> None:
    rig = Rig(tmp_path, retain_s=100, push=True)
    base = rig.up.head()
    places = {}
    for task_id in ("pushed", "unpushed", "fresh", "orphan", "running"):
        rig.reload(push=task_id != "unpushed")
        task = rig.task(task_id, repo="app", base=base)
        ws = rig.opened(task)
        (ws.dir / f"{task_id}.txt").write_text("x\n")
        places[task_id] = ws
        if task_id in ("pushed", "unpushed", "fresh"):
            closed = rig.close(ws, task)
            assert closed.code is not None and closed.code["pushed"] is (task_id != "unpushed")
            run(rig.spaces.leave(ws, set()))
    now = places["fresh"].place.finished_at
    assert now is not None
    for task_id in ("pushed", "unpushed"):  # finished long ago
        place = worktree.load(rig.worktrees, task_id)
        assert place is not None
        place.finished_at = now - 101
        worktree.save(rig.worktrees, place)
    orphan = worktree.load(rig.worktrees, "orphan")
    assert orphan is not None
    orphan.poller_pid, orphan.poller_start = 999999, "1"
    worktree.save(rig.worktrees, orphan)
    rig.reload(push=True)
    swept = run(
        retention.sweep(rig.worktrees, rig.cfg.repos, os.environ, running={"running"}, now=now)
    )
    assert sorted(swept.removed) == ["orphan", "pushed", "unpushed"] and swept.errors == []
    assert swept.branches_deleted == ["af/pushed/w1"]
    assert sorted(p.name for p in rig.worktrees.iterdir()) == [".fleet", "fresh", "running"]
    assert sorted(rig.up.branches()) == ["af/fresh/w1", "af/pushed/w1", "main"]
    mirror_branches = git(rig.mirror, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    assert mirror_branches.split() == ["af/fresh/w1", "af/unpushed/w1"]
    listed = git(rig.mirror, "worktree", "list", "--porcelain")
    assert listed.count("\nlocked ") == 2 and "prunable" not in listed
    assert list((rig.worktrees / ".fleet" / "trash").iterdir()) == []


def test_below_the_free_space_floor_no_worktree_is_made(tmp_path: Path) -> None:
    rig = Rig(tmp_path, _min_free=2**62)
    got = rig.open(rig.task(repo="app", base=rig.up.head()))
    assert isinstance(got, Unusable) and got.code is not None
    assert got.code["phase"] == "worktree"
    assert (
        got.reason.startswith("only ")
        and "below min_free_bytes (4,611,686,018,427,387,904)" in got.reason
    )
    assert not (rig.worktrees / "t1").exists()


def test_push_creates_the_branch_and_never_overwrites_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path, push=True)
    base = rig.up.head()
    task = rig.task(repo="app", base=base)
    ws = rig.opened(task)
    (ws.dir / "a.txt").write_text("pushed\n")
    code = rig.close(ws, task).code
    assert code is not None and code["pushed"] is True and "error" not in code
    assert rig.up.branches()["af/t1/w1"] == code["head"]

    # Someone else's branch of that name on the remote: reported, left as it was.
    git(rig.up.bare, "update-ref", "refs/heads/af/t2/w1", base)
    task = rig.task("t2", repo="app", base=base)
    ws = rig.opened(task)
    (ws.dir / "a.txt").write_text("mine\n")
    closed = rig.close(ws, task)
    assert closed.failed is None and closed.code is not None
    assert (closed.code["pushed"], closed.code["phase"]) == (False, "push")
    assert closed.code["error"] == (
        f"push: the remote already has a branch af/t2/w1 at {base[:12]} (not this task's "
        f"{closed.code['head'][:12]}); it was not overwritten"
    )
    assert rig.up.branches()["af/t2/w1"] == base


def test_a_pull_request_is_opened_through_the_forge_api(tmp_path: Path) -> None:
    token = tmp_path / "token.env"
    token.write_text("GITHUB_TOKEN=ghs_test\n")
    rig = Rig(tmp_path)
    with ForgeMock("ghs_test", {"team/app": rig.up.bare}) as forge:
        rig.reload(
            push=True,
            token_file=str(token),
            pull_request={"api": forge.url, "repo": "team/app"},
        )
        task = rig.task(repo="app", base=rig.up.head(), ref="main")
        ws = rig.opened(task)
        (ws.dir / "a.txt").write_text("reviewed\n")
        code = rig.close(ws, task).code
        assert code is not None and "error" not in code, code
        assert code["pull_request_url"] == "https://github.example/team/app/pull/1"
        [seen] = forge.seen
        assert (seen.path, seen.headers["Authorization"]) == (
            "/repos/team/app/pulls",
            "Bearer ghs_test",
        )
        assert seen.headers["Accept"] == "application/vnd.github+json"
        assert seen.body == {
            "title": "Fix the thing",
            "head": "af/t1/w1",
            "base": "main",
            "body": "Task t1, by worker w1.",
        }
        # The forge refuses (a pull request for this head exists): reported, branch pushed.
        forge.pulls.append({"head": "af/t2/w1"})
        task = rig.task("t2", repo="app", base=rig.up.head())
        ws = rig.opened(task)
        (ws.dir / "a.txt").write_text("again\n")
        code = rig.close(ws, task).code
        assert code is not None and code["pushed"] is True and code["phase"] == "pull_request"
        assert code["error"] == (
            f"pull request: {forge.url}/repos/team/app/pulls: 422 Validation Failed: "
            "A pull request already exists for team:af/t2/w1."
        )
        assert code["pull_request_url"] is None
