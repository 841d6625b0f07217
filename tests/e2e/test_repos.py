"""Repositories on simulated hosts: a git server on the LAN serves a bare repository over SSH
to a deploy key; `apply` gives each worker host git, the repository's mirror (fetched once, as
the repository's own user, through the pinned host key), its credential readable by the
workers that use it only, and each worker's REPOS_FILE; a second apply changes nothing;
`status` shows the repositories' disk use. The hosts are shared by the whole module."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet_env import BROKER, NODES, FleetEnv, simulated_fleet, worker
from tests.e2e.git_host import GitHost

pytestmark = pytest.mark.e2e

GIT = "git-host"
MIRROR = "/var/lib/fleet/repos/app.git"
KEY = "/etc/fleet/repos/app/deploy_key"


class Env:
    def __init__(self, fleet: FleetEnv, server: GitHost, key: Path, first_apply: str) -> None:
        self.fleet, self.server, self.key, self.first_apply = fleet, server, key, first_apply

    def repos(self, **more: dict[str, Any]) -> dict[str, Any]:
        """fleet.yaml's `repos:` (and a short ack_wait: a killed poller's task comes back
        within seconds)."""
        app = {
            "url": self.server.url("app"),
            "host_key": self.server.host_key,
            "credentials": str(self.key),
            "ref": "main",
            "check": ["test", "-f", "README.md"],
            "push": True,
        }
        return {"nats": {"ack_wait": "6s"}, "repos": {"app": app, **more}}

    def apply(self) -> str:
        done = self.fleet.fleetctl("apply", "--all", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def sh(self, host: str, script: str) -> str:
        return self.fleet.sh(host, script).strip()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("e2e-repos")
    workers = [
        worker("cmd-a", NODES[0], repo="app", concurrency=3, env_file="/etc/fleet/env/cmd-a.env"),
        worker("cmd-b", NODES[0], repo="app"),
        # The stand-in logs its runs (STANDIN_LOG in their env files): when each ran, and
        # `sleep_first_run` sleeps on the first run of a task only.
        worker("cmd-c", NODES[1], repo="app", env_file="/etc/fleet/env/cmd-c.env"),
        worker("cmd-d", NODES[1]),
    ]
    with simulated_fleet(base, workers, others=(GIT,)) as fleet:
        for node, wid in ((NODES[0], "cmd-a"), (NODES[1], "cmd-c")):
            log = f"STANDIN_LOG=/var/lib/fleet/{wid}/standin.log\n"
            fleet.net.hosts[node].write_file(f"/etc/fleet/env/{wid}.env", log, mode=0o600)
        server = GitHost(fleet.net.hosts[GIT])
        key = server.add_deploy_key(base / "keys" / "app-deploy")
        server.create("app", {"README.md": "hello\n", "src/app.py": "print('app')\n"})
        e = Env(fleet, server, key, "")
        fleet.extra = e.repos()
        fleet.write()
        done = fleet.fleetctl("apply", "--all", "--issue-creds", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        e.first_apply = done.stdout + done.stderr
        yield e


def test_apply_shows_and_makes_the_mirror_fetched_through_the_pinned_host_key(env: Env) -> None:
    url = env.server.url("app")
    plan_lines = [" ".join(line.split()) for line in env.first_apply.splitlines()]
    assert f"+ repo app {url} {MIRROR}" in plan_lines
    # git is there already (the hosts are this machine's image): nothing to install
    assert not any(line.startswith("+ package git") for line in plan_lines)
    head = env.server.head("app")
    for node in NODES:
        assert env.sh(node, f"stat -c '%a %U %G' {MIRROR}") == "2770 fleet-repo-app fleet-repo-app"
        assert env.sh(node, f"git --git-dir={MIRROR} rev-parse refs/remotes/origin/main") == head
        assert env.sh(node, f"git --git-dir={MIRROR} config core.sharedRepository") == "0660"
        assert env.sh(node, f"stat -c '%a %U %G' {KEY}") == "640 root fleet-repo-app"
    assert env.sh(BROKER, f"test -e {MIRROR} || echo none") == "none"
    assert env.sh(NODES[0], "stat -c '%a %U %G' /etc/fleet/workers/cmd-a/repos.json") == (
        "640 root fleet-cmd-a"
    )
    assert env.sh(NODES[0], "stat -c '%a %U %G' /etc/fleet/repos/app") == (
        "750 root fleet-repo-app"
    )
    # the running poller has the repository's group, from its unit
    pid = env.fleet.main_pid(NODES[1], "cmd-c-poller.service").removeprefix("MainPID=")
    gid = env.sh(NODES[1], "getent group fleet-repo-app | cut -d: -f3")
    groups = env.sh(NODES[1], f"grep '^Groups:' /proc/{pid}/status").split()[1:]
    assert gid in groups, (pid, gid, groups)
    unit = env.sh(NODES[1], "cat /etc/systemd/system/cmd-c-poller.service")
    assert "SupplementaryGroups=fleet-repo-app" in unit
    assert f"ReadWritePaths={MIRROR}" in unit
    other = env.sh(NODES[1], "cat /etc/systemd/system/cmd-d-poller.service")
    assert "SupplementaryGroups" not in other and "REPOS_FILE" not in other
    doc = json.loads(env.sh(NODES[0], "cat /etc/fleet/workers/cmd-a/repos.json"))
    assert doc["default"] == "app"
    assert doc["repos"]["app"]["ssh_key"] == KEY and doc["repos"]["app"]["mirror"] == MIRROR


def test_a_second_apply_changes_nothing(env: Env) -> None:
    done = env.fleet.fleetctl("plan", "--detailed-exitcode")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes. The fleet matches its configuration." in done.stdout


def worker_sh(env: Env, host: str, wid: str, groups: list[str], script: str) -> tuple[int, str]:
    """`script` as the worker's user with the groups its unit gives it (SupplementaryGroups=)."""
    user = f"fleet-{wid}"
    argv = ["setpriv", "--reuid", user, "--regid", user]
    argv += ["--groups", ",".join(groups)] if groups else ["--clear-groups"]
    done = env.fleet.net.hosts[host].run([*argv, "--", "sh", "-c", script])
    return done.returncode, (done.stdout + done.stderr).decode()


def test_the_mirror_and_its_key_serve_the_repositorys_workers_only(env: Env) -> None:
    """A worker of the repository fetches into the shared mirror with its credential, as its
    poller does; a worker on the same host without the repository can read neither."""
    fetch = (
        "GIT_CONFIG_GLOBAL=/etc/fleet/repos/app/gitconfig GIT_CONFIG_NOSYSTEM=1 "
        f"GIT_SSH_COMMAND='ssh -F /dev/null -i {KEY} -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/fleet/repos/app/known_hosts' "
        f"git --git-dir={MIRROR} fetch --quiet --no-write-fetch-head origin"
    )
    code, out = worker_sh(env, NODES[1], "cmd-c", ["fleet-repo-app"], fetch)
    assert code == 0, out
    code, out = worker_sh(env, NODES[1], "cmd-d", [], f"cat {KEY}")
    assert code != 0 and "Permission denied" in out
    code, out = worker_sh(env, NODES[1], "cmd-d", [], f"ls {MIRROR}")
    assert code != 0 and "Permission denied" in out


def test_the_deploy_key_is_in_no_plan_or_output(env: Env) -> None:
    secret = env.key.read_text().splitlines()[1]  # a line of the key's base64
    diff = env.fleet.fleetctl("plan", "--diff", "--json")
    assert diff.returncode == 0, diff.stderr
    for text in (env.first_apply, diff.stdout + diff.stderr):
        assert secret not in text
    shown = [c for h in json.loads(diff.stdout)["hosts"] for c in h["changes"] if c["name"] == KEY]
    assert shown == []  # nothing to change: and when there is, it is `sensitive`


def send(env: Env, task_id: str, directive: dict[str, Any], *to: str) -> subprocess.Popen[str]:
    """`fleetctl task send` to `to`, the stand-in CLI's directive as the prompt; running."""
    targets = [arg for wid in to for arg in ("--to", wid)]
    text = f"standin: {json.dumps(directive)}\nedit the code"
    return env.fleet.popen("task", "send", text, "--id", task_id, *targets)


def results(env: Env, task_id: str, count: int, timeout: float = 90) -> dict[str, Any]:
    """Each worker's result of `task_id`, once `count` of them are in."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        done = env.fleet.fleetctl("results", task_id, "--json")
        if done.returncode == 0:
            found = {r["worker_id"]: r for r in json.loads(done.stdout)["results"]}
            if len(found) >= count and all("code" in r for r in found.values()):
                return found
        time.sleep(0.5)
    raise AssertionError(f"{task_id}: {len(found)} of {count} results: {found}")


def branch_file(env: Env, branch: str, path: str) -> str:
    return env.server._run(f"git --git-dir=/srv/git/app.git show {branch}:{path}", user="git")


def test_one_task_fanned_out_to_three_workers_on_two_hosts(env: Env) -> None:
    """Each worker gets its own worktree at the same base, commits its own change on its own
    branch, pushes it, and runs the check; nothing of one reaches another."""
    head = env.server.head("app")
    lines = {wid: {"README.md": f"line of {wid}\n"} for wid in ("cmd-a", "cmd-b", "cmd-c")}
    sending = send(env, "fan-1", {"append_by_worker": lines}, "cmd-a", "cmd-b", "cmd-c")
    assert sending.wait(60) == 0, sending.communicate()
    found = results(env, "fan-1", 3)
    assert sorted(found) == ["cmd-a", "cmd-b", "cmd-c"]
    for wid, result in found.items():
        code = result["code"]
        why = {k: result.get(k) for k in ("error", "stderr_tail")} | {"code": code}
        assert result["status"] == "completed", why
        assert (code["repo"], code["base"]) == ("app", head)
        assert code["branch"] == f"af/fan-1/{wid}" and code["pushed"] is True, code
        assert [(f["path"], f["status"]) for f in code["files"]] == [("README.md", "modified")]
        assert f"+line of {wid}" in code["patch"]
        others = [w for w in lines if w != wid]
        assert not any(f"line of {w}" in code["patch"] for w in others)
        assert code["check"]["passed"] is True and code["check"]["exit_code"] == 0
        assert branch_file(env, f"af/fan-1/{wid}", "README.md") == f"hello\nline of {wid}\n"
    assert env.server.head("app") == head  # main untouched


def test_three_tasks_editing_one_file_on_one_worker_at_once(env: Env) -> None:
    """concurrency: 3 is three worktrees: three overlapping tasks appending to the same file
    end on three clean branches, each with its own line only."""
    sending = [
        send(env, f"same-{i}", {"sleep": 2, "append": {"README.md": f"task {i}\n"}}, "cmd-a")
        for i in range(3)
    ]
    for p in sending:
        assert p.wait(60) == 0, p.communicate()
    found = [results(env, f"same-{i}", 1)["cmd-a"] for i in range(3)]
    runs = [
        json.loads(line)
        for line in env.sh(NODES[0], "cat /var/lib/fleet/cmd-a/standin.log").splitlines()
    ]
    at = {(r["task_id"], r["phase"]): r["at"] for r in runs if r["task_id"].startswith("same-")}
    starts = [at[(f"same-{i}", "start")] for i in range(3)]
    ends = [at[(f"same-{i}", "end")] for i in range(3)]
    assert max(starts) < min(ends), (starts, ends)  # all three ran at the same time
    for i, result in enumerate(found):
        code = result["code"]
        assert result["status"] == "completed" and code["branch"] == f"af/same-{i}/cmd-a"
        assert branch_file(env, code["branch"], "README.md") == f"hello\ntask {i}\n"


def test_a_worker_killed_mid_task_starts_again_from_a_fresh_worktree(env: Env) -> None:
    """The poller dies (SIGKILL) while its CLI runs; the task comes back, starts from a fresh
    worktree (what the first run wrote is not in it) and the killed run's worktree is gone."""
    node, unit = NODES[1], "cmd-c-poller.service"
    directive = {"append": {"notes.txt": "run\n"}, "sleep_first_run": 60}
    sending = send(env, "killed-1", directive, "cmd-c")
    assert sending.wait(60) == 0, sending.communicate()
    worktree = "/var/lib/fleet/cmd-c/worktrees/killed-1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and env.sh(node, f"cat {worktree}/notes.txt") != "run":
        time.sleep(0.2)
    assert env.sh(node, f"cat {worktree}/notes.txt") == "run"  # the first run is under way
    pid = env.fleet.main_pid(node, unit).removeprefix("MainPID=")
    env.sh(node, f"pkill -KILL -g $(ps -o pgid= {pid}); kill -KILL {pid}")
    env.sh(node, f"systemctl stop {unit}; systemctl start {unit}")
    result = results(env, "killed-1", 1, timeout=120)["cmd-c"]
    code = result["code"]
    runs = env.sh(node, "cat /var/lib/fleet/cmd-c/standin.log").splitlines()
    starts = [json.loads(r) for r in runs if '"killed-1"' in r and '"start"' in r]
    assert len(starts) == 2 and result["status"] == "completed", (starts, result)
    assert branch_file(env, code["branch"], "notes.txt") == "run\n"  # one run's line, not two
    # the killed run's worktree is gone: one worktree of the task, one entry in the mirror
    listed = env.sh(node, f"git --git-dir={MIRROR} worktree list --porcelain")
    assert [line for line in listed.splitlines() if line.startswith("worktree ")].count(
        f"worktree {worktree}"
    ) == 1, listed
    assert env.sh(node, f"ls {MIRROR}/worktrees | grep -c '^killed-1'") == "1"
    assert env.sh(node, "ls /var/lib/fleet/cmd-c/worktrees/.fleet/trash 2>/dev/null | wc -l") == "0"


def test_a_wrong_host_key_fails_the_apply_at_the_repository(env: Env) -> None:
    other = env.fleet.net.hosts[BROKER].host_key_line  # a real key, not the git host's
    bad = dict(env.repos()["repos"]["app"], host_key=other)
    env.fleet.extra = env.repos(bad=bad)
    env.fleet.set_worker("cmd-d", repo="bad")
    done = env.fleet.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "repo bad: fetch" in out and "Host key verification failed" in out, out
    env.fleet.extra = env.repos(bad=dict(bad, host_key=env.server.host_key))
    env.fleet.write()
    env.apply()
    assert env.sh(
        NODES[1], "git --git-dir=/var/lib/fleet/repos/bad.git rev-parse refs/remotes/origin/main"
    ) == env.server.head("app")


def test_a_repository_no_worker_uses_leaves_the_host_but_git_stays(env: Env) -> None:
    env.fleet.set_worker("cmd-d", repo=None)
    env.fleet.workers = [{k: v for k, v in w.items() if v is not None} for w in env.fleet.workers]
    env.fleet.extra = env.repos()
    env.fleet.write()
    out = env.apply()
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "- repo bad" in lines
    assert "- file /etc/fleet/repos/bad/deploy_key" in " ".join(lines)
    assert env.sh(NODES[1], "test -e /var/lib/fleet/repos/bad.git || echo gone") == "gone"
    assert env.sh(NODES[1], "id fleet-repo-bad 2>/dev/null || echo gone") == "gone"
    assert env.sh(NODES[1], "test -d /etc/fleet/repos/bad || echo gone") == "gone"
    assert env.sh(NODES[1], "command -v git") == "/usr/bin/git"
    assert env.sh(NODES[1], f"test -d {MIRROR} && echo kept") == "kept"


def test_status_shows_each_hosts_repository_disk_and_checks_its_floor(env: Env) -> None:
    done = env.fleet.fleetctl("status", "--json", "--check")
    body = json.loads(done.stdout)
    assert done.returncode == 0, body["problems"]
    hosts = {h["name"]: h for h in body["hosts"]}
    assert hosts[BROKER]["repos"] is None
    for node in NODES:
        disk = hosts[node]["repos"]
        assert disk["used_bytes"] > 10_000 and disk["free_bytes"] > disk["floor_bytes"], disk
        assert disk["paths"][0] == {
            "path": "/var/lib/fleet/repos",
            "bytes": disk["paths"][0]["bytes"],
        }
    # A host whose repositories' disk is nearly full: a small file system over the mirrors.
    host = env.fleet.net.hosts[NODES[1]]
    host.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", "/var/lib/fleet/repos"], check=True
    )
    try:
        done = env.fleet.fleetctl("status", "--json", "--check")
        body = json.loads(done.stdout)
        assert done.returncode == 1
        low = [p for p in body["problems"] if p.startswith(f"host {NODES[1]}:")]
        assert len(low) == 1 and "below the 1.00 GiB floor" in low[0], body["problems"]
    finally:
        host.run(["umount", "/var/lib/fleet/repos"], check=True)


# Run inside a worker host: git is packed into a .deb from the files dpkg says it installed,
# served by a local apt repository (the only one the host knows), and removed; so apply's
# install through the host's package manager is the real apt-get, offline.
WITHOUT_GIT = r"""
set -e
root=$(mktemp -d)/git
mkdir -p "$root/DEBIAN" /srv/apt
while read -r path; do
    if [ -f "$path" ] || [ -L "$path" ]; then
        mkdir -p "$root$(dirname "$path")" && cp -a "$path" "$root$path"
    fi
done < /var/lib/dpkg/info/git.list
for field in Package Version Architecture Maintainer Depends Description; do
    printf '%s: %s\n' "$field" "$(dpkg-query -W -f="\${$field}" git | head -1)"
done > "$root/DEBIAN/control"
cp /var/lib/dpkg/info/git.conffiles "$root/DEBIAN/conffiles"
dpkg-deb -Znone --root-owner-group -b "$root" /srv/apt/git.deb >/dev/null
cd /srv/apt && dpkg-scanpackages . /dev/null > Packages 2>/dev/null
rm -rf /etc/apt/sources.list.d/* /var/lib/apt/lists/*
echo 'deb [trusted=yes] file:/srv/apt ./' > /etc/apt/sources.list
dpkg --remove --force-depends git >/dev/null 2>&1
"""


def test_a_host_without_git_gets_it_from_its_package_manager(env: Env) -> None:
    node = NODES[1]
    host = env.fleet.net.hosts[node]
    done = host.run(["sh", "-c", WITHOUT_GIT], timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert env.sh(node, "command -v git || echo none") == "none"
    plan = env.fleet.fleetctl("plan", "--host", node)
    lines = [" ".join(line.split()) for line in plan.stdout.splitlines()]
    assert "+ package git system" in lines, plan.stdout + plan.stderr
    env.apply()
    assert env.sh(node, "command -v git") == "/usr/bin/git"
    assert env.sh(node, "dpkg-query -W -f='${Status}' git") == "install ok installed"
    again = env.fleet.fleetctl("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
