"""CREATE_PR's git steps against real repositories: they never raise, and the work dir always
goes back to where it was, with nothing of the task left in it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from poller import gitpr

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone of a bare remote with one commit, and a change the task's CLI made."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    work = tmp_path / "repo"
    git(tmp_path, "clone", "-q", str(remote), str(work))
    ident = ("-c", "user.name=t", "-c", "user.email=t@t")
    git(work, *ident, "commit", "-q", "--allow-empty", "-m", "init")
    git(work, "push", "-q", "origin", "HEAD")
    (work / "made-by-the-task.txt").write_text("the CLI's work\n")
    return work


def push(repo: Path, instructions: str, task_id: str = "g1") -> dict[str, object]:
    remote = str(repo.parent / "remote.git")
    return asyncio.run(gitpr.commit_and_push(repo, task_id, remote, instructions))


def clean_on(repo: Path, where: str) -> None:
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == where
    assert git(repo, "status", "--porcelain") == ""


def test_a_nul_and_control_characters_in_the_first_line_still_commit(repo: Path) -> None:
    """A NUL in the commit message raised ValueError out of the poller (the task then ran
    again and again), leaving the changes staged on the task's branch."""
    base = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    info = push(repo, "fix\x00 it\x1b[31m\tnow\ud800\n\nmore")
    assert info.get("error") is None and info["pushed"] is True, info
    assert git(repo, "log", "-1", "--format=%B", str(info["commit"])) == (
        "af: task g1\n\nfix  it [31m now?"
    )
    clean_on(repo, base)


def test_a_commit_that_fails_leaves_nothing_behind(repo: Path) -> None:
    git(repo, "config", "commit.gpgsign", "true")
    git(repo, "config", "gpg.program", "/bin/false")
    base = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    info = push(repo, "sign me")
    error = str(info["error"])
    assert error.startswith("git -c failed (") and "gpg failed to sign" in error, error
    assert error.endswith(
        "; the task's changes were not committed and were removed from the work dir"
    )
    assert "commit" not in info and "pushed" not in info
    clean_on(repo, base)
    assert not (repo / "made-by-the-task.txt").exists()


def test_a_failed_push_keeps_the_commit_and_goes_back(repo: Path) -> None:
    base = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    info = asyncio.run(gitpr.commit_and_push(repo, "g2", str(repo / "no-such-remote"), "x"))
    assert str(info["error"]).startswith("git push failed ("), info
    assert git(repo, "rev-parse", "af/g2") == info["commit"]
    clean_on(repo, base)


def test_a_detached_work_dir_goes_back_to_its_commit(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    info = push(repo, "detached")
    assert info["pushed"] is True, info
    clean_on(repo, "HEAD")
    assert git(repo, "rev-parse", "HEAD") == head


@pytest.mark.parametrize(
    ("instructions", "title"),
    [
        ("  \n\n  first words  \nsecond", "first words"),
        ("\x00\x01", "task"),
        ("é" * 100, "é" * gitpr.TITLE_CHARS),
    ],
)
def test_the_title_is_the_first_line_made_safe(instructions: str, title: str) -> None:
    assert gitpr.title_of(instructions) == title
