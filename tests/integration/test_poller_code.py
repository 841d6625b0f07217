"""Code tasks through real pollers and a real nats-server: each task in its own worktree of a
local repository (an upstream reached by file://, the host's bare mirror made as provisioning
makes it: tests/support/gitrepos.py), its change back in the result's `code`. The agent is the
STAND-IN CLI (tests/support/standin_cli: not a real one), editing files as its directive says.
The steps one by one, against real git without the bus: tests/unit/poller/test_workspace.py."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support import gitrepos
from tests.support.gitrepos import Upstream, git
from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    Poller,
    alive,
    directive,
    poller_env,
    publish_task,
    results,
    run,
    setup_bus,
    standin_records,
    stream_messages,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]
FILES = {"a.txt": "one\n", "b.txt": "bee\n"}


class Host:
    """One machine's worth of workers: a shared mirror of `app`, each worker its own dir."""

    def __init__(self, tmp: Path, url: str, **repo: Any) -> None:
        self.tmp, self.url = tmp, url
        self.up: Upstream = gitrepos.upstream(tmp, FILES)
        self.mirror = gitrepos.mirror(tmp)
        self.repo = repo
        self.pollers: dict[str, Poller] = {}

    def work(self, worker: str) -> Path:
        return self.tmp / worker

    async def start(self, worker: str, *, concurrency: int = 1, ack_wait: int = 5) -> Poller:
        await setup_bus(self.url, worker, ack_wait=ack_wait, concurrency=concurrency)
        work = self.work(worker)
        work.mkdir(exist_ok=True)
        entry = gitrepos.repo_entry(self.up, self.mirror, **self.repo)
        path = gitrepos.repos_file(
            work / "repos.json", {"app": entry}, worktrees=work / "worktrees", default="app"
        )
        env = poller_env(self.url, worker, work, REPOS_FILE=str(path), CONCURRENCY=str(concurrency))
        self.pollers[worker] = Poller(env, work / "poller.log").start()
        return self.pollers[worker]

    def stop(self) -> None:
        for p in self.pollers.values():
            p.stop()


async def _results(js: Any, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(await results(js)) >= n

    assert await wait_until(enough, timeout, step=0.1)
    await asyncio.sleep(0.3)  # nothing more shows up
    found = await results(js)
    assert len(found) == n, found
    return found


def _added_lines(patch: str) -> list[str]:
    return [
        line[1:]
        for line in patch.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


def test_one_task_fanned_out_starts_everywhere_from_the_same_base(
    server: NatsServer, tmp_path: Path
) -> None:
    """Three workers sharing one mirror; the upstream moves on after the task was sent:
    every worker starts from the commit the task names, each branch holds only its own
    worker's change, and each is pushed."""
    host = Host(tmp_path, server.url, push=True)
    base = host.up.head()

    async def go() -> list[dict[str, Any]]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            for w in ("w1", "w2", "w3"):
                await host.start(w)
            host.up.commit({"a.txt": "moved on upstream\n"})
            ask = directive(
                append_by_worker={w: {"a.txt": f"by {w}\n"} for w in ("w1", "w2", "w3")}
            )
            for w in ("w1", "w2", "w3"):
                task = {"task_id": "fan", "instructions": ask, "repo": "app", "base": base}
                await publish_task(js, w, task, msg_id=f"fan:{w}")
            return await _results(js, 3)
        finally:
            await nc.close()
            host.stop()

    found = {r["worker_id"]: r for r in run(go())}
    assert sorted(found) == ["w1", "w2", "w3"]
    for w, r in found.items():
        code = r["code"]
        assert r["status"] == "completed", r
        assert (code["base"], code["branch"], code["pushed"]) == (base, f"af/fan/{w}", True)
        assert _added_lines(code["patch"]) == [f"by {w}"]  # nobody else's line
        assert code["files"] == [
            {"path": "a.txt", "status": "modified", "insertions": 1, "deletions": 0}
        ]
        assert git(host.up.bare, "show", f"af/fan/{w}:a.txt") == f"one\nby {w}"
        assert git(host.up.bare, "rev-parse", f"af/fan/{w}^") == base
        [start] = standin_records(host.work(w), "start")
        assert start["cwd"] == str(host.work(w) / "worktrees" / "fan")


def test_three_tasks_at_once_editing_one_file_give_three_clean_branches(
    server: NatsServer, tmp_path: Path
) -> None:
    host = Host(tmp_path, server.url)
    base = host.up.head()

    async def go() -> list[dict[str, Any]]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await host.start("w1", concurrency=3)
            for i in range(3):
                ask = directive(append={"a.txt": f"task {i}\n"}, sleep=1.5)
                task = {"task_id": f"c{i}", "instructions": ask, "repo": "app", "base": base}
                await publish_task(js, "w1", task)
            return await _results(js, 3)
        finally:
            await nc.close()
            host.stop()

    found = {r["task_id"]: r for r in run(go())}
    starts = standin_records(host.work("w1"), "start")
    ends = standin_records(host.work("w1"), "end")
    assert max(s["at"] for s in starts) < min(e["at"] for e in ends)  # all three at once
    assert len({s["cwd"] for s in starts}) == 3
    for i in range(3):
        code = found[f"c{i}"]["code"]
        assert _added_lines(code["patch"]) == [f"task {i}"], code["patch"]
        assert git(host.mirror, "show", f"af/c{i}/w1:a.txt") == f"one\ntask {i}"
        assert git(host.mirror, "rev-parse", f"af/c{i}/w1^") == base


def test_a_worker_killed_mid_task_reruns_it_in_a_fresh_worktree(
    server: NatsServer, tmp_path: Path
) -> None:
    host = Host(tmp_path, server.url)
    base = host.up.head()
    work = host.work("w1")

    async def go() -> list[dict[str, Any]]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            poller = await host.start("w1", ack_wait=2)
            ask = directive(
                append={"a.txt": "once\n"}, files={"half.txt": "x\n"}, sleep_first_run=30
            )
            await publish_task(
                js, "w1", {"task_id": "k1", "instructions": ask, "repo": "app", "base": base}
            )
            assert await wait_until(lambda: len(standin_records(work, "start")) == 1, 15)
            [first] = standin_records(work, "start")
            assert (work / "worktrees" / "k1" / "half.txt").exists()
            poller.signal(signal.SIGKILL)
            poller.wait(5)
            poller.start()
            assert await wait_until(lambda: not alive(first["pid"]), 10)
            return await _results(js, 1)
        finally:
            await nc.close()
            host.stop()

    [r] = run(go())
    assert (r["status"], r["attempt"]) == ("completed", 2)
    code = r["code"]
    # The rerun started from the base: the killed run's append and file are not in its change.
    assert _added_lines(code["patch"]) == ["once", "x"]
    assert [f["path"] for f in code["files"]] == ["a.txt", "half.txt"]
    listed = git(host.mirror, "worktree", "list", "--porcelain")
    assert listed.count("\nlocked ") == 1  # the killed run's entry went with its worktree
    assert sorted(p.name for p in (work / "worktrees").iterdir()) == [".fleet", "k1"]
    assert list((work / "worktrees" / ".fleet" / "trash").iterdir()) == []


def test_setup_failure_check_and_a_truncated_patch(server: NatsServer, tmp_path: Path) -> None:
    host = Host(
        tmp_path,
        server.url,
        setup=["sh", "-c", "echo preparing; test ! -f no-setup"],
        check=["sh", "-c", "grep -q good a.txt"],
    )
    broken = host.up.commit({"no-setup": "x\n"}, "setup cannot pass here")
    git(host.up.checkout, "rm", "-q", "no-setup")
    git(host.up.checkout, *gitrepos.IDENT, "commit", "-q", "-m", "setup passes again")
    git(host.up.checkout, "push", "-q", "origin", "HEAD:refs/heads/main")
    good = host.up.head()
    big = {f"big{i}.txt": ("y" * 99 + "\n") * 2000 for i in range(4)}  # ~800 KB of patch

    async def go() -> tuple[list[dict[str, Any]], list[Any]]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await host.start("w1")
            tasks = [
                ("setup", broken, {"append": {"a.txt": "good\n"}}),
                ("pass", good, {"append": {"a.txt": "good\n"}}),
                ("fail", good, {"append": {"a.txt": "bad\n"}}),
                ("big", good, {"files": big, "append": {"a.txt": "good\n"}}),
            ]
            for task_id, base, ask in tasks:
                task = {
                    "task_id": task_id,
                    "instructions": directive(**ask),
                    "repo": "app",
                    "base": base,
                }
                await publish_task(js, "w1", task)
            found = await _results(js, 4)
            return found, await stream_messages(js, "AF_RESULTS")
        finally:
            await nc.close()
            host.stop()

    found, raw = run(go())
    by = {r["task_id"]: r for r in found}
    setup = by["setup"]
    assert (setup["status"], setup["code"]["phase"]) == ("failed", "setup")
    assert setup.get("exit_code") is None
    assert setup["code"]["setup"]["output_tail"] == "preparing\n"
    assert setup["error"] == "setup sh -c echo preparing; test ! -f no-setup failed (exit 1)"
    ran = [s["task_id"] for s in standin_records(host.work("w1"), "start")]
    assert ran == ["pass", "fail", "big"]  # the CLI never ran for the failed setup

    assert by["pass"]["status"] == "completed" and by["pass"]["code"]["check"]["passed"] is True
    assert by["fail"]["status"] == "completed" and by["fail"]["code"]["check"]["passed"] is False
    assert by["fail"]["code"]["check"]["exit_code"] == 1

    code = by["big"]["code"]
    assert code["patch_truncated"] is True and len(code["files"]) == 5
    assert code["insertions"] == 8001
    assert 0 < len(code["patch"].encode()) <= 256 * 1024
    assert git(host.mirror, "diff", "--stat", good, "af/big/w1").splitlines()[-1] == (
        " 5 files changed, 8001 insertions(+)"
    )
    sizes = [len(json.dumps(body).encode()) for _, body, _ in raw]
    assert max(sizes) < 768 * 1024


def test_tasks_naming_what_the_worker_may_not_use_are_rejected_unrun(
    server: NatsServer, tmp_path: Path
) -> None:
    host = Host(tmp_path, server.url)
    base = host.up.head()
    bad = {
        "undeclared": {"repo": "other"},
        "option": {"repo": "app", "ref": "--upload-pack=touch /tmp/owned"},
        "path": {"repo": "../app"},
        "transport": {"repo": "app", "ref": "ext::sh -c touch% /tmp/owned"},
        "missing": {"repo": "app", "base": "f" * 40},
        "unknownref": {"repo": "app", "ref": "no-such-branch"},
    }

    async def go() -> tuple[list[dict[str, Any]], list[Any]]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await host.start("w1")
            for task_id, fields in bad.items():
                await publish_task(js, "w1", {"task_id": task_id, "instructions": "x", **fields})
            await publish_task(
                js, "w1", {"task_id": "fine", "instructions": "x", "repo": "app", "base": base}
            )
            found = await _results(js, len(bad) + 1)
            return found, await stream_messages(js, "AF_DEAD")
        finally:
            await nc.close()
            host.stop()

    found, dead = run(go())
    by = {r["task_id"]: r for r in found}
    for task_id in bad:
        assert by[task_id]["status"] == "rejected", by[task_id]
        assert "code" not in by[task_id]
    assert by["undeclared"]["error"] == (
        "repository 'other' is not declared for this worker (it has: app)"
    )
    assert by["option"]["error"].startswith("ref '--upload-pack=touch /tmp/owned' starts with '-'")
    assert by["path"]["error"].startswith("repository name '../app' must be")
    assert by["transport"]["error"].startswith("ref 'ext::sh -c touch% /tmp/owned' holds")
    assert by["missing"]["error"] == f"commit {'f' * 40} is not in app ({host.up.url})"
    assert by["unknownref"]["error"] == f"ref 'no-such-branch' is not in app ({host.up.url})"
    assert sorted(d["task_id"] for _, d, _ in dead) == sorted(bad)
    assert [s["task_id"] for s in standin_records(host.work("w1"), "start")] == ["fine"]
    assert by["fine"]["status"] == "completed"
