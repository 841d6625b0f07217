"""`fleetctl up` with repositories: each one a started worker uses is mirrored under the state
dir as apply mirrors it on a host (fetched with real git, here from a file:// remote), each
such worker gets its REPOS_FILE, and a repository that cannot be fetched keeps only its own
workers from starting, saying why."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.integration.test_local_up import LocalFleet, fleet, worker  # noqa: F401

SEED = "git -c user.name=seed -c user.email=seed@example.invalid"


def source_repo(where: Path, uid: int | None) -> str:
    """A bare repository with one commit on main, owned by the fleet's user; its commit."""
    work = where / "seed"
    script = (
        f"git init -q -b main {work} && cd {work} && echo hello > README.md && git add -A && "
        f"{SEED} commit -q -m seed && git init -q --bare -b main {where}/src.git && "
        f"git push -q {where}/src.git main && git rev-parse HEAD"
    )
    head = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    if uid is not None:
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(where / "src.git")], check=True)
    return head.stdout.strip()


def test_up_mirrors_each_repository_and_hands_its_workers_their_file(
    fleet: LocalFleet,  # noqa: F811
) -> None:
    head = source_repo(fleet.root, fleet.uid)
    repos = (
        "repos:\n"
        f"  app:\n    url: file://{fleet.root}/src.git\n    ref: main\n"
        "    check: [test, -f, README.md]\n"
        "  gone:\n    url: file:///nonexistent/gone.git\n"
    )
    code = worker("w-code", ["wc", "-w"]) + "    repo: app\n"
    broken = worker("w-broken", ["wc", "-w"]) + "    repo: gone\n"
    fleet.write(code + broken + worker("w-plain", ["wc", "-w"]), nats=repos)
    summary = fleet.up()
    assert summary["started"] == ["w-code", "w-plain"]
    [why] = summary["not_started"]
    assert why["worker_id"] == "w-broken"
    assert why["reason"].startswith("repository gone: git fetch file:///nonexistent/gone.git")

    mirror = fleet.state.repos / "app.git"
    rev = ["git", f"--git-dir={mirror}", "rev-parse", "refs/remotes/origin/main"]
    assert subprocess.run(rev, capture_output=True, text=True).stdout.strip() == head
    hooks = ["git", f"--git-dir={mirror}", "config", "core.hooksPath"]
    assert subprocess.run(hooks, capture_output=True, text=True).stdout.strip() == os.devnull

    pollers = fleet.pollers()
    file = fleet.state.repos_file("w-code")
    assert pollers["w-code"].env["REPOS_FILE"] == str(file)
    assert "REPOS_FILE" not in pollers["w-plain"].env
    assert file.stat().st_mode & 0o777 == 0o600
    doc = json.loads(file.read_text())
    assert doc["default"] == "app"
    assert doc["worktrees"] == str(fleet.state.work_base("w-code") / "worktrees")
    app = doc["repos"]["app"]
    assert (app["url"], app["mirror"], app["ref"]) == (
        f"file://{fleet.root}/src.git",
        str(mirror),
        "main",
    )
    assert (app["check"], app["ssh_key"], app["token_file"]) == (
        ["test", "-f", "README.md"],
        None,
        None,
    )
    assert app["gitconfig"] == str(fleet.state.repos / "app" / "gitconfig")


def test_a_local_worker_works_on_its_repository_in_a_worktree(
    fleet: LocalFleet,  # noqa: F811
) -> None:
    """With the poller's worktrees: a task on the repository runs in a worktree of the
    state dir's mirror and its change comes back as a branch there and a patch."""
    head = source_repo(fleet.root, fleet.uid)
    repos = f"repos:\n  app:\n    url: file://{fleet.root}/src.git\n    ref: main\n"
    edit = ["sh", "-c", "cat > task.txt; echo edited"]
    fleet.write(worker("w-code", edit) + "    repo: app\n", nats=repos)
    assert fleet.up()["started"] == ["w-code"]
    # As the fleet's user, who owns the repository (git refuses another user's).
    args = ["task", "send", "--to", "w-code", "--wait", "--wait-timeout", "60s", "--json"]
    done = json.loads(fleet.fleetctl(*args, "the task's words").stdout)
    [result] = done["results"]
    code = result["code"]
    assert (code["base"], code["branch"]) == (head, f"af/{done['task_id']}/w-code")
    assert [(f["path"], f["status"]) for f in code["files"]] == [("task.txt", "added")]
    assert "+the task's words" in code["patch"]
    mirror = fleet.state.repos / "app.git"
    show = ["git", f"--git-dir={mirror}", "show", f"{code['branch']}:task.txt"]
    assert subprocess.run(show, capture_output=True, text=True).stdout == "the task's words"
