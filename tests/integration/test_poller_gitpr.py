"""CREATE_PR: a completed task's changes are committed on af/<task_id> and pushed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    directive,
    publish_task,
    run,
    running_poller,
    standin_records,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_create_pr_pushes_a_branch_to_the_remote(
    server: NatsServer, work: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    repo = work / "repo"
    git(work, "clone", "-q", str(remote), str(repo))
    git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "init",
    )
    git(repo, "push", "-q", "origin", "HEAD")
    base_branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")

    async def go() -> None:
        # no `gh` on this PATH: the PR step is skipped
        env = {"CREATE_PR": "true", "GITHUB_REMOTE": str(remote), "PATH": "/usr/bin:/bin"}
        async with running_poller(server.url, work, env=env) as bus:
            js, poller = bus.js, bus.poller
            await publish_task(
                js, "w1", {"task_id": "pr1", "instructions": directive(write_file="new.txt")}
            )
            await publish_task(js, "w1", {"task_id": "pr2", "instructions": "no changes"})

            async def two() -> bool:
                return len(await stream_messages(js, "AF_RESULTS")) == 2

            assert await wait_until(two, 20), poller.events()[-5:]
            rs = {r["task_id"]: r for _, r, _ in await stream_messages(js, "AF_RESULTS")}
        g = rs["pr1"]["git"]
        assert g["branch"] == "af/pr1" and g["pushed"] is True and "error" not in g, g
        assert git(remote, "rev-parse", "refs/heads/af/pr1") == g["commit"]
        assert git(remote, "show", "--name-only", "--format=", g["commit"]) == "new.txt"
        assert "pr_url" not in g
        assert "git" not in rs["pr2"]  # nothing changed: no branch
        assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == base_branch
        assert git(repo, "status", "--porcelain") == ""

    run(go())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_nul_in_the_title_and_a_surrogate_in_metadata_run_once_and_leave_the_repo_clean(
    server: NatsServer, work: Path, tmp_path: Path
) -> None:
    """Both raised after the CLI ran (ValueError in `git commit -m`, UnicodeEncodeError in
    the result): the task was naked and its CLI ran again until max_deliver, with no
    result, and the changes stayed staged in the work dir."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    repo = work / "repo"
    git(work, "clone", "-q", str(remote), str(repo))
    git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "i",
    )
    git(repo, "push", "-q", "origin", "HEAD")
    base_branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    task = b'{"task_id": "nul1", "metadata": {"k": "\\ud800"}, "instructions": '
    task += json.dumps(directive(write_file="new.txt") + "\x00 and more").encode() + b"}"

    async def go() -> None:
        env = {"CREATE_PR": "true", "GITHUB_REMOTE": str(remote), "PATH": "/usr/bin:/bin"}
        async with running_poller(server.url, work, max_deliver=3, env=env) as bus:
            await publish_task(bus.js, "w1", task)

            async def stored() -> bool:
                return len(await stream_messages(bus.js, "AF_RESULTS")) == 1

            assert await wait_until(stored, 20), bus.poller.events()[-5:]
            [(_, result, _)] = await stream_messages(bus.js, "AF_RESULTS")
            info = await bus.js.consumer_info("AF_TASKS", "worker-w1")
            assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
            assert len(standin_records(work, "start")) == 1
        assert result["status"] == "completed" and result["attempt"] == 1
        assert result["metadata"] == {"k": "\ud800"}  # escaped in the JSON, the same string
        assert result["git"]["pushed"] is True and "error" not in result["git"], result["git"]
        message = git(remote, "log", "-1", "--format=%B", result["git"]["commit"])
        assert message.startswith("af: task nul1\n\nstandin: {") and "\x00" not in message
        assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == base_branch
        assert git(repo, "status", "--porcelain") == ""

    run(go())
