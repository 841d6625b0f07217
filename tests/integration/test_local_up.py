"""`fleetctl up` / `down`: the real supervisor, nats-server and pollers on this machine, run
as an unprivileged user (a throwaway uid through setpriv when the tests run as root), with
the process table as the judge of what runs and what is left behind."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleetctl.local.state import StateDir
from fleetctl.tasks.client import Client, Sent
from tests.support.natsserver import listening_tcp

VENV_BIN = Path(sys.executable).parent
SERVERS = """\
version: 1
servers:
  - name: here
    address: 192.0.2.10
    roles: [broker-host, worker-host]
"""
# Marks `started` once it has its prompt: from then on it runs the task (before, a poller
# killed while starting it leaves it an empty stdin).
SLOW = (
    "import os, sys, time; d = sys.stdin.read(); "
    "open(os.environ['HOME'] + '/started', 'w').close(); time.sleep(3); "
    "open(os.environ['HOME'] + '/done', 'a').write(d[:20] + '\\n'); print('done')"
)


def worker(wid: str, command: list[str]) -> str:
    lines = [f"worker_id: {wid}", "llm: command", f"command: {json.dumps(command)}", "host: here"]
    return "  - " + "\n    ".join(lines) + "\n"


ECHO = worker("w-echo", ["python3", "-c", "import sys; print('echo:', sys.stdin.read())"])
COUNT = worker("w-count", ["wc", "-w"])
REPLICA_LAG = "status:\n  max_replica_lag: 10\n"


@dataclass
class Proc:
    pid: int
    uid: int
    cmdline: str
    env: dict[str, str]


def processes_under(root: Path) -> list[Proc]:
    """Every process whose working directory or command line is inside `root`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            uid = int((entry / "status").read_text().split("Uid:")[1].split()[0])
            raw_env = (entry / "environ").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if cwd.startswith(str(root)) or str(root) in cmdline:
            env = dict(
                item.split("=", 1)
                for item in raw_env.decode(errors="replace").split("\0")
                if "=" in item
            )
            found.append(Proc(int(entry.name), uid, cmdline, env))
    return found


def venv_for_others(where: Path) -> Path:
    """A Python any user can run, with this venv's packages: the venv's own interpreter may
    live under a home only its owner can enter (pyenv under /root). A venv of the system
    Python whose .pth adds this venv's site-packages (so fleetctl, nats-py and the poller
    import the same code), with the pinned nats-server beside it as `./dev setup` puts it."""
    system = Path("/usr/bin/python3")
    ours = sys.version_info[:2]
    probe = [str(system), "-c", "import sys; print(sys.version_info[:2])"]
    if not system.exists() or subprocess.run(
        probe, capture_output=True, text=True
    ).stdout.strip() != str(ours):
        pytest.skip(f"running as another uid needs /usr/bin/python3 {ours[0]}.{ours[1]}")
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(where)], check=True)
    site = next((where / "lib").glob("python3*/site-packages"))
    ours_site = next(
        p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)
    )
    (site / "zz-fleetctl-test.pth").write_text(f"import site; site.addsitedir({ours_site!r})\n")
    (where / "bin" / "nats-server").symlink_to(VENV_BIN / "nats-server")
    return where / "bin" / "python"


class LocalFleet:
    def __init__(self, root: Path, uid: int | None, python: Path) -> None:
        self.root = root
        self.uid = uid
        self.python = python
        self.state = StateDir(root / ".fleetctl")

    def write(self, workers: str, nats: str = "") -> None:
        text = f"version: 1\n{nats}workers:\n{workers}"
        (self.root / "fleet.yaml").write_text(text)
        (self.root / "servers.yaml").write_text(SERVERS)
        self._own(self.root / "fleet.yaml", self.root / "servers.yaml")

    def _own(self, *paths: Path) -> None:
        if self.uid is not None:
            for p in paths:
                os.chown(p, self.uid, self.uid)

    def argv(self, *args: str) -> list[str]:
        """`fleetctl ARGS` as the fleet's user."""
        prefix = []
        if self.uid is not None:
            ids = [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
            prefix = ["setpriv", *ids, "--"]
        main = "from fleetctl.cli.main import main; main()"
        return [*prefix, str(self.python), "-c", main, *args]

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": str(self.root), "LANG": "C.UTF-8"}

    def fleetctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def up(self, *args: str) -> dict[str, Any]:
        summary: dict[str, Any] = json.loads(
            self.fleetctl("up", "--detach", "--json", *args).stdout
        )
        return summary

    def send(self, workers: list[str], text: str) -> Sent:
        """Through the task API, which finds the local fleet by its up.json."""
        with Client.open(self.root / "fleet.yaml") as client:
            return client.send(text, to=workers)

    def results(self, sent: Sent, timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Each target's final result (a worker without one is missing)."""
        with Client.open(self.root / "fleet.yaml") as client:
            done = client.wait(sent, timeout=timeout)
        return {r.worker_id: dict(r.body) for r in done if r.final}

    def pollers(self) -> dict[str, Proc]:
        return {
            p.env["WORKER_ID"]: p
            for p in processes_under(self.root)
            if "-m poller" in p.cmdline and "WORKER_ID" in p.env
        }


@pytest.fixture
def fleet() -> Iterator[LocalFleet]:
    with a_local_fleet() as local:
        yield local


@contextmanager
def a_local_fleet() -> Iterator[LocalFleet]:
    """A directory for a local fleet, run as an unprivileged user; everything under it is
    stopped and removed afterwards, even when a test failed."""
    if shutil.which("wc") is None or shutil.which("python3", path="/usr/bin:/bin") is None:
        pytest.skip("needs wc and /usr/bin/python3")
    uid = None
    # Outside pytest's own tmp dir, which only its owner may enter.
    root = Path(tempfile.mkdtemp(prefix="fleetctl-up-")) / "fleet"
    root.mkdir()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to run as an unprivileged uid")
        uid = 61000 + os.getpid() % 4000  # a throwaway uid with no passwd entry
        root.parent.chmod(0o755)
        os.chown(root, uid, uid)
    python = venv_for_others(root.parent / "venv") if uid is not None else Path(sys.executable)
    local = LocalFleet(root, uid, python)
    try:
        yield local
    finally:
        local.fleetctl("down", check=False)
        for p in processes_under(root):  # never leave anything behind, even after a failure
            os.kill(p.pid, signal.SIGKILL)
        shutil.rmtree(root.parent, ignore_errors=True)


def test_up_runs_every_worker_that_can_run_here(fleet: LocalFleet) -> None:
    late = fleet.root / "bin" / "late-cli"
    fleet.write(ECHO + COUNT + worker("w-late", [str(late)]))
    summary = fleet.up()
    assert summary["started"] == ["w-count", "w-echo"]
    assert summary["not_started"] == [
        {"worker_id": "w-late", "reason": f"{late} not found (install it, or change command:)"}
    ]
    assert summary["state_dir"] == str(fleet.state.root)
    record = json.loads(fleet.state.up_json.read_text())
    assert set(record) == {"version", "fleet", "pid", "nats_url", "creds", "workers", "brokers"}
    assert len(record["brokers"]) == 1  # one nats-server: no cluster without --brokers
    assert record["fleet"] == str(fleet.root / "fleet.yaml")
    assert record["nats_url"] == summary["nats_url"]
    assert record["workers"] == ["w-count", "w-echo"]
    for path in record["creds"].values():
        assert Path(path).is_relative_to(fleet.state.root)  # never the user's own store
        assert Path(path).stat().st_mode & 0o777 == 0o600

    # Nothing runs as root: the supervisor, nats-server and both pollers are the user's.
    procs = processes_under(fleet.root)
    assert {p.uid for p in procs} == {fleet.uid if fleet.uid is not None else os.getuid()}
    [broker] = [p for p in procs if "nats-server" in p.cmdline]
    # Its client port and nothing else: no HTTP monitoring (it has no authentication).
    port = int(record["nats_url"].rsplit(":", 1)[1])
    assert listening_tcp(broker.pid) == {("127.0.0.1", port)}
    pollers = fleet.pollers()
    assert sorted(pollers) == ["w-count", "w-echo"]
    # The unit's environment, remapped under the state dir.
    env = pollers["w-echo"].env
    base = str(fleet.state.work_base("w-echo"))
    assert env["HOME"] == env["WORK_BASE"] == base
    # No shared work dir: each task gets a directory of its own (poller/worktree.py).
    assert not {"WORK_DIR", "CREATE_PR", "GITHUB_REMOTE"} & set(env)
    assert not (Path(base) / "repo").exists()
    assert env["NATS_URL"] == record["nats_url"]
    assert Path(env["NATS_CREDS"]).is_relative_to(fleet.state.root)
    assert env["NATS_CONSUMER"] == "worker-w-echo"

    task = fleet.send(["w-echo", "w-count"], "one two three")
    results = fleet.results(task)
    assert results["w-echo"]["output"] == "echo: one two three\n"
    assert results["w-count"]["output"].strip() == "3"
    assert (fleet.state.log("w-echo")).read_text().count('"event": "starting"') == 1

    # The task commands find the local fleet with no flags, as the user who runs it.
    sent = json.loads(fleet.fleetctl("task", "send", "--to", "w-count", "--json", "a b").stdout)
    task_id = sent["task_id"]
    assert sent["recorded"] is True  # up made the task records bucket, its publisher writes it
    done = json.loads(fleet.fleetctl("results", task_id, "--watch", "--json").stdout)
    assert [(r["worker_id"], r["output"].strip()) for r in done["results"]] == [("w-count", "2")]
    assert [t["worker_id"] for t in done["record"]["targets"]] == ["w-count"]
    assert task_id in fleet.fleetctl("tasks").stdout
    fleet.fleetctl("dead", "list")

    again = fleet.fleetctl("up", "--detach")
    assert "already running" in again.stderr
    assert "No worker changed." in again.stderr

    fleet.fleetctl("down")
    assert processes_under(fleet.root) == []
    assert not fleet.state.up_json.exists()

    only = fleet.up("--only", "w-echo")
    assert only["started"] == ["w-echo"] and only["not_started"] == []
    assert sorted(fleet.pollers()) == ["w-echo"]


def test_a_killed_poller_is_restarted_and_its_task_runs_once(fleet: LocalFleet) -> None:
    fleet.write(worker("w-slow", ["python3", "-c", SLOW]), nats="nats:\n  ack_wait: 2s\n")
    fleet.up()
    first = fleet.pollers()["w-slow"].pid
    task = fleet.send(["w-slow"], "the task")
    deadline = time.monotonic() + 30
    while not (fleet.state.work_base("w-slow") / "started").exists():
        assert time.monotonic() < deadline, "the CLI never started"
        time.sleep(0.05)
    os.kill(first, signal.SIGKILL)  # the poller crashes while its CLI runs the task
    result = fleet.results(task, timeout=60)["w-slow"]
    assert result["status"] == "completed"
    assert result["attempt"] >= 2  # redelivered (a later attempt if the lease was still held)
    done = fleet.state.work_base("w-slow") / "done"
    assert done.read_text() == "the task\n"  # once: the killed attempt's CLI died with it
    assert fleet.pollers()["w-slow"].pid != first
    log = fleet.state.log("supervisor").read_text()
    assert "w-slow" in log and "exited with -9" in log


def test_queued_tasks_survive_down_and_fleet_changes_apply(fleet: LocalFleet) -> None:
    late = fleet.root / "bin" / "late-cli"
    fleet.write(ECHO + COUNT + worker("w-late", [str(late)]))
    fleet.up()
    queued = fleet.send(["w-late"], "queued while its CLI was missing")
    fleet.fleetctl("down")
    assert processes_under(fleet.root) == []

    late.parent.mkdir()
    late.write_text("#!/bin/sh\nexec wc -c\n")
    late.chmod(0o755)
    summary = fleet.up()
    assert summary["started"] == ["w-count", "w-echo", "w-late"]
    assert fleet.results(queued)["w-late"]["output"].strip() == "32"

    before = fleet.pollers()
    changed_echo = worker(
        "w-echo", ["python3", "-c", "import sys; print('ECHO:', sys.stdin.read())"]
    )
    fleet.write(
        changed_echo + COUNT + worker("w-late", [str(late)]) + worker("w-new", ["wc", "-l"])
    )
    reloaded = fleet.fleetctl("up")
    assert "started: w-new" in reloaded.stderr
    assert "restarted: w-echo" in reloaded.stderr
    after = fleet.pollers()
    assert after["w-count"].pid == before["w-count"].pid  # unchanged: not restarted
    assert after["w-echo"].pid != before["w-echo"].pid
    task = fleet.send(["w-new", "w-echo"], "a\nb\n")
    results = fleet.results(task)
    assert results["w-new"]["output"].strip() == "2"
    assert results["w-echo"]["output"].startswith("ECHO:")

    fleet.write(changed_echo + worker("w-new", ["wc", "-l"]))
    removed = fleet.fleetctl("up", "--reload")
    assert "stopped: w-count, w-late" in removed.stderr
    assert sorted(fleet.pollers()) == ["w-echo", "w-new"]


def test_down_lets_a_running_task_finish_and_a_killed_supervisor_leaves_nothing(
    fleet: LocalFleet,
) -> None:
    fleet.write(worker("w-slow", ["python3", "-c", SLOW]) + ECHO)
    fleet.up()
    task = fleet.send(["w-slow"], "finish me")
    deadline = time.monotonic() + 30
    while not any("time.sleep" in p.cmdline for p in processes_under(fleet.root)):
        assert time.monotonic() < deadline, "the CLI never started"
        time.sleep(0.05)
    down = fleet.fleetctl("down")  # the task has about 3 s to go: well within its drain
    assert "draining w-slow: 1 task, up to 30m" in down.stderr
    assert "draining w-echo" not in down.stderr  # idle: nothing to wait for
    assert processes_under(fleet.root) == []
    assert (fleet.state.work_base("w-slow") / "done").read_text() == "finish me\n"

    fleet.up()
    assert fleet.results(task)["w-slow"]["status"] == "completed"
    supervisor = json.loads(fleet.state.up_json.read_text())["pid"]
    os.kill(supervisor, signal.SIGKILL)  # no clean shutdown at all
    deadline = time.monotonic() + 15
    while processes_under(fleet.root):
        left = [p.cmdline for p in processes_under(fleet.root)]
        assert time.monotonic() < deadline, f"left behind: {left}"
        time.sleep(0.1)
    assert "No local fleet is running" in fleet.fleetctl("down").stderr
    again = fleet.up()
    assert again["started"] == ["w-echo", "w-slow"]  # a stale up.json does not block the next up


# Long the first time a task runs on this worker, quick every time after: a handed-back
# task's second run finishes.
FIRST_RUN_LONG = (
    "import os, sys, time; d = sys.stdin.read(); mark = os.environ['HOME'] + '/ran'; "
    "first = not os.path.exists(mark); open(mark, 'a').write('x'); "
    "time.sleep(60 if first else 0); print('runs:', open(mark).read().count('x'))"
)


def _cli_running(fleet: LocalFleet, what: str) -> None:
    deadline = time.monotonic() + 30
    while not any(what in p.cmdline for p in processes_under(fleet.root)):
        assert time.monotonic() < deadline, "the CLI never started"
        time.sleep(0.05)


def test_up_reload_drains_a_changed_worker_then_hands_back_past_its_drain_timeout(
    fleet: LocalFleet,
) -> None:
    fleet.write(worker("w-slow", ["python3", "-c", SLOW]))
    fleet.up()
    first = fleet.pollers()["w-slow"].pid
    task = fleet.send(["w-slow"], "finish me")
    _cli_running(fleet, "time.sleep")
    fleet.write(worker("w-slow", ["python3", "-c", SLOW]) + "    labels: {v: two}\n")
    reloaded = fleet.fleetctl("up", "--reload")
    assert "draining w-slow: 1 task, up to 30m" in reloaded.stderr
    assert "restarted: w-slow" in reloaded.stderr
    # Waited for: the task finished under the old poller, once, on its first delivery.
    result = fleet.results(task)["w-slow"]
    assert (result["status"], result["attempt"]) == ("completed", 1)
    assert (fleet.state.work_base("w-slow") / "done").read_text() == "finish me\n"
    assert fleet.pollers()["w-slow"].pid != first

    long = ["python3", "-c", FIRST_RUN_LONG]
    fleet.write(worker("w-slow", long) + "    drain_timeout: 1s\n")
    fleet.fleetctl("up", "--reload")
    task = fleet.send(["w-slow"], "hand me back")
    _cli_running(fleet, "time.sleep(60")
    fleet.write(worker("w-slow", long) + "    drain_timeout: 1s\n    labels: {v: three}\n")
    t0 = time.monotonic()
    reloaded = fleet.fleetctl("up", "--reload")
    assert "draining w-slow: 1 task, up to 31s" in reloaded.stderr
    result = fleet.results(task)["w-slow"]
    # Handed back after the 1 s drain and run again by the new poller at once (the ack wait
    # is 60 s): its first run killed, its second one finished.
    assert time.monotonic() - t0 < 20
    assert (result["status"], result["attempt"], result["output"]) == ("completed", 2, "runs: 2\n")


def test_a_worker_that_keeps_crashing_is_reported_and_the_others_run(fleet: LocalFleet) -> None:
    bad_env = fleet.root / "bad.env"
    bad_env.write_text("CONCURRENCY=zero\n")  # the poller refuses it and exits 2
    # a file of the local fleet's own, outside /etc/fleet/env/
    bad = f"    env_file: {bad_env}\n    env_file_outside_fleet: true\n"
    fleet.write(ECHO + worker("w-bad", ["wc"]) + bad)
    summary = fleet.up("--wait-timeout", "5")
    assert summary["started"] == ["w-echo"]
    [failing] = summary["not_started"]
    assert failing["worker_id"] == "w-bad"
    assert failing["reason"].startswith("no heartbeat within 5 s (exited ")
    assert "last code 2); see " in failing["reason"]
    log = fleet.state.log("supervisor").read_text()
    assert "w-bad" in log and "crash loop: exited 3 times in 60 s (last exit code 2)" in log
    assert "CONCURRENCY='zero' must be an integer" in fleet.state.log("w-bad").read_text()
    task = fleet.send(["w-echo"], "still here")
    assert fleet.results(task)["w-echo"]["output"] == "echo: still here\n"


def test_up_in_the_foreground_prefixes_every_workers_log_and_ctrl_c_stops_it(
    fleet: LocalFleet,
) -> None:
    fleet.write(ECHO + COUNT)
    proc = subprocess.Popen(
        fleet.argv("up"),
        cwd=fleet.root,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any(line.startswith("  stop ") for line in lines):  # the ready report's last
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
        lines.append(proc.stdout.readline())
    assert any(line.startswith("w-echo       | info starting ") for line in lines), lines
    assert any(line.startswith("w-count      | info consumer_bound ") for line in lines)
    assert any(line.startswith("Local fleet ready in ") for line in lines)
    assert any("stop   Ctrl-C, or fleetctl down" in line for line in lines)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "w-echo       | info stopped" in rest
    assert rest.rstrip().endswith("Local fleet stopped.")
    assert processes_under(fleet.root) == []


def up_on_a_pty(fleet: LocalFleet) -> tuple[subprocess.Popen[bytes], int]:
    """`fleetctl up` on a terminal of its own: the process, and the terminal's reading end."""
    main, side = pty.openpty()
    proc = subprocess.Popen(
        fleet.argv("up"),
        cwd=fleet.root,
        env=fleet.env,
        stdin=side,
        stdout=side,
        stderr=side,
        start_new_session=True,
    )
    os.close(side)
    return proc, main


def _read_pty(
    fd: int, until: re.Pattern[str], proc: subprocess.Popen[bytes], seen: bytearray
) -> str:
    """Everything the terminal got (into `seen`), up to the first line matching `until`;
    decoded, CR LF as LF."""
    deadline = time.monotonic() + 60
    while True:
        text = seen.decode(errors="replace").replace("\r\n", "\n")
        found = until.search(text)
        if found:
            return text[: found.end()]
        exited = proc.poll() is not None  # then only what it wrote before is left to read
        assert time.monotonic() < deadline, text
        if select.select([fd], [], [], 0 if exited else 0.5)[0]:
            try:
                seen += os.read(fd, 65536)
                continue
            except OSError:  # EIO: every writer has closed it
                pass
        assert not exited, text


def test_up_on_a_terminal_colours_each_prefix_and_level_and_escapes_what_workers_say(
    fleet: LocalFleet,
) -> None:
    """On a terminal (a pty): each worker's prefix and each level in colour, a failure's
    line highlighted, and the escape sequences a CLI printed shown as text, never sent."""
    hostile = "printf 'boom: \\033]0;pwned\\007 \\033[2J broke\\n' >&2; exit 3"
    fleet.write(ECHO + worker("w-boom", ["sh", "-c", hostile]))
    proc, main = up_on_a_pty(fleet)
    seen = bytearray()
    try:
        _read_pty(main, re.compile("Ctrl-C, or fleetctl down"), proc, seen)
        fleet.send(["w-boom"], "x")
        shown = _read_pty(main, re.compile(r"^.*task_done.*$", re.M), proc, seen)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        os.close(main)
    esc = "\x1b"
    [failure] = [line for line in shown.splitlines() if "task_done" in line]
    # Its prefix in the worker's colour, `warning` bold yellow, the rest of the line yellow;
    # the CLI's own sequences as text: the only ESC bytes are the colours'.
    prefix = re.escape(f"{esc}[") + r"(\d+)mw-boom +" + re.escape(f"{esc}[0m | ")
    level = re.escape(f"{esc}[1;33mwarning{esc}[0m {esc}[33mtask_done ")
    matched = re.fullmatch(prefix + level + r"(.*)" + re.escape(f"{esc}[0m"), failure)
    assert matched, repr(failure)
    rest = matched.group(2)
    assert "status=failed exit_code=3" in rest and esc not in rest
    assert rest.endswith(r"reason=exited with code 3: boom: \x1b]0;pwned\x07 \x1b[2J broke")
    [started] = [line for line in shown.splitlines() if "w-echo" in line and " starting " in line]
    echo = re.match(re.escape(f"{esc}[") + r"(\d+)mw-echo +" + re.escape(f"{esc}[0m | "), started)
    assert echo and echo.group(1) != matched.group(1)  # each worker its own colour
    assert f"{esc}[32minfo{esc}[0m starting" in started


def test_a_broker_that_cannot_start_is_one_line_and_leaves_nothing(fleet: LocalFleet) -> None:
    nats = f"nats:\n  server_binary: {{path: /bin/true, sha256: '{'0' * 64}'}}\n"
    fleet.write(ECHO, nats=nats)
    for mode in (["--detach"], []):
        done = fleet.fleetctl("up", *mode, check=False)
        assert done.returncode == 1
        assert "error: nats.server_binary: /bin/true has sha256 " in done.stderr, done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert processes_under(fleet.root) == []
        assert not fleet.state.up_json.exists()


# As an older fleetctl left the local store: w-echo's user without the task-lease subjects
# (a permission added later), run as the fleet's user so the files stay that user's.
AGE_CREDS = """
import dataclasses, sys
from nsc.permissions import Permission
from fleetctl.identity import credentials, natsaccess
from fleetctl.config.loader import load_fleet
from fleetctl.local.server import local_fleet
from fleetctl.local.state import StateDir
from fleetctl.bus.names import NatsNames
from pathlib import Path
root = Path(sys.argv[1])
loaded = load_fleet(root / "fleet.yaml", root / "servers.yaml")
fleet = local_fleet(loaded, StateDir(root / ".fleetctl"), 1)
authority = credentials.load(fleet)
perms = natsaccess.worker_permissions(NatsNames("af"), "w-echo")
old = [s for s in perms.pub.allow if "kv" not in s.lower()]
perms = dataclasses.replace(perms, pub=Permission.of(old, perms.pub.deny))
authority.issue_user(natsaccess.worker_user("w-echo"), perms, tags=[natsaccess.ROLE_WORKER])
"""


def test_creds_an_older_version_issued_are_issued_again(fleet: LocalFleet) -> None:
    fleet.write(ECHO)
    fleet.up()
    fleet.fleetctl("down")
    prefix = fleet.argv()[:-2]  # setpriv ... python, without `-c main`
    subprocess.run([*prefix, "-c", AGE_CREDS, str(fleet.root)], env=fleet.env, check=True)
    fleet.up()
    task = fleet.send(["w-echo"], "leased")
    assert fleet.results(task)["w-echo"]["output"] == "echo: leased\n"


OTHER_USER = """\
import asyncio, json, os, sys
import nats
found = {}
for path in sys.argv[2:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        found[path] = "read"
    except OSError as e:
        found[path] = type(e).__name__
async def anonymous():
    try:
        nc = await nats.connect(sys.argv[1], allow_reconnect=False, connect_timeout=3)
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
    await nc.close()
    return "connected"
found["broker"] = asyncio.run(anonymous())
print(json.dumps(found))
"""


def test_another_local_user_reaches_nothing_of_the_local_fleet(fleet: LocalFleet) -> None:
    """A local user (docs/security.md, "Attack replay"): while `fleetctl up` runs as one
    user, another uid can read none of its state (the creds, the local operator's keys, the
    logs, up.json, a worker's directory), and the broker refuses it without credentials
    (it has no monitoring port either: test_up_runs_every_worker_that_can_run_here)."""
    if fleet.uid is None:
        pytest.skip("another uid needs root: run the tests as root (CI does)")
    fleet.write(ECHO)
    summary = fleet.up()
    record = json.loads(fleet.state.up_json.read_text())
    paths = [
        fleet.state.root,
        fleet.state.up_json,
        fleet.state.nsc,
        fleet.state.log("w-echo"),
        fleet.state.work_base("w-echo"),
        *record["creds"].values(),
    ]
    other = fleet.uid + 1
    ids = [f"--reuid={other}", f"--regid={other}", "--clear-groups"]
    done = subprocess.run(
        ["setpriv", *ids, "--", str(fleet.python), "-c", OTHER_USER, summary["nats_url"]]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=60,
        env=fleet.env,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert {found[str(p)] for p in paths} == {"PermissionError"}, found
    assert "authorization violation" in found["broker"].lower(), found["broker"]


def _status(fleet: LocalFleet) -> tuple[int, dict[str, Any]]:
    done = fleet.fleetctl("status", "--check", "--json", check=False)
    return done.returncode, json.loads(done.stdout)


def _until_healthy(fleet: LocalFleet, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        code, body = _status(fleet)
        if code == 0:
            return body
        assert time.monotonic() < deadline, (body["problems"], _log_tails(fleet))
        time.sleep(0.5)


def _log_tails(fleet: LocalFleet, lines: int = 12) -> str:
    """The end of every log of the local fleet: what a failed wait was waiting for."""
    tails = []
    for log in sorted(fleet.state.logs.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"== {log.name}\n" + "\n".join(tail))
    return "\n".join(tails)


def _copy_on(body: dict[str, Any], stream: str, broker: str) -> dict[str, Any]:
    """The status's entry for `stream`'s copy on `broker` (not its leader)."""
    found = next(s for s in body["broker"]["streams"] if s["name"] == stream)
    return next(r for r in found["replicas"] if r["name"] == broker)


def test_up_with_three_brokers_runs_a_cluster_that_outlives_a_broker(fleet: LocalFleet) -> None:
    """`up --brokers 3`: three nats-servers on loopback, every stream on all three, pollers
    with every URL; a frozen broker is a problem for `status --check`, and so is its copy of
    the task stream falling behind while tasks are sent, until it answers again and catches
    up; a killed one (the task stream's leader, while a task runs) loses no task and is
    started again by the supervisor."""
    fleet.write(worker("w-slow", ["python3", "-c", SLOW]) + ECHO, REPLICA_LAG)
    fleet.up("--brokers", "3")
    record = json.loads(fleet.state.up_json.read_text())
    assert len(record["brokers"]) == 3
    urls = record["nats_url"].split(",")
    assert len(urls) == 3
    assert fleet.pollers()["w-echo"].env["NATS_URL"] == record["nats_url"]
    assert len([p for p in processes_under(fleet.root) if "nats-server" in p.cmdline]) == 3

    broker = _until_healthy(fleet)["broker"]
    names = sorted(record["brokers"])
    assert sorted(s["name"] for s in broker["servers"] if s["up"]) == names
    assert broker["meta_leader"] in names
    tasks = next(s for s in broker["streams"] if s["name"] == "AF_TASKS")
    assert sorted([tasks["leader"], *(r["name"] for r in tasks["replicas"])]) == names

    pids = {
        b["name"]: b["pid"] for b in json.loads(fleet.state.supervisor_json.read_text())["brokers"]
    }
    # Neither the task stream's leader nor the meta leader: a frozen meta leader leaves the
    # account's JetStream API unanswered until the others elect a new one (seconds on a
    # loaded machine), and this test is about a frozen follower.
    follower = next(n for n in names if n not in (tasks["leader"], broker["meta_leader"]))
    os.kill(pids[follower], signal.SIGSTOP)  # frozen: up as a process, answering nothing
    try:
        with Client.open(fleet.root / "fleet.yaml") as client:
            queued = [client.send(f"while {follower} sleeps {i}", to=["w-echo"]) for i in range(12)]
        code, body = _status(fleet)
        assert code == 1
        assert f"broker {follower}: down (it does not answer)" in body["problems"]
        frozen = _copy_on(body, "AF_TASKS", follower)
        assert frozen["lag"] > 10 and not frozen["current"]  # 12 tasks stored without it
        assert (
            f"stream AF_TASKS: its copy on {follower} (down) is {frozen['lag']} operations "
            f"behind its leader {tasks['leader']} (status.max_replica_lag 10)"
        ) in body["problems"]
    finally:
        os.kill(pids[follower], signal.SIGCONT)
    body = _until_healthy(fleet)
    assert _copy_on(body, "AF_TASKS", follower) | {"active_s": 0} == {
        "name": follower,
        "current": True,
        "lag": 0,
        "active_s": 0,
        "offline": False,
    }
    for sent in queued:
        assert fleet.results(sent)["w-echo"]["status"] == "completed"

    sent = fleet.send(["w-slow"], "through the cluster")
    deadline = time.monotonic() + 30
    while not any("time.sleep" in p.cmdline for p in processes_under(fleet.root)):
        assert time.monotonic() < deadline, "the CLI never started"
        time.sleep(0.05)
    os.kill(pids[tasks["leader"]], signal.SIGKILL)
    result = fleet.results(sent, timeout=60)["w-slow"]
    assert result["status"] == "completed"
    done = fleet.state.work_base("w-slow") / "done"
    assert done.read_text() == "through the cluster\n"  # run once
    body = _until_healthy(fleet)
    assert sorted(s["name"] for s in body["broker"]["servers"] if s["up"]) == names
    after = json.loads(fleet.state.supervisor_json.read_text())["brokers"]
    restarted = next(b["pid"] for b in after if b["name"] == tasks["leader"])
    assert restarted != pids[tasks["leader"]]


def test_up_serves_the_dashboard_beside_the_fleet_and_says_how(fleet: LocalFleet) -> None:
    """`up --dashboard`: the dashboard on loopback, on the local bus with fleet-dashboard's
    creds from up.json; `up` prints the command that serves it otherwise."""
    import httpx

    from tests.support.dashboard import free_port

    fleet.write(ECHO)
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "up.log"
    with log.open("w") as output:
        proc = subprocess.Popen(
            fleet.argv("up", "--dashboard", "--dashboard-port", str(port)),
            cwd=fleet.root,
            env=fleet.env | {"PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "dashboard: " not in (text := log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.1)
        assert "  web    fleetctl dashboard\n" in text, text
        assert f"dashboard: http://127.0.0.1:{port}/ (Ctrl-C stops)" in text, text
        task = fleet.send(["w-echo"], "hello dashboard")
        assert fleet.results(task)["w-echo"]["output"] == "echo: hello dashboard\n"
        answers = httpx.get(f"http://127.0.0.1:{port}/api/tasks/{task.task_id}", timeout=10)
        assert answers.json()["results"][0]["output"] == "echo: hello dashboard\n"
        status = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=10).json()
        assert status["local"] is True and status["broker"]["reachable"] is True
        assert (status["hosts_observed"], status["hosts"]) == (False, [])  # as `status` says
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
