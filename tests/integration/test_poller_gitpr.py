"""CREATE_PR: a completed task's changes are committed on af/<task_id> and pushed."""

from __future__ import annotations

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
