"""A new user's path through the real commands, on one local fleet of their own (`fleetctl up`,
run as an unprivileged user: a worker whose command fails, one that echoes, one that sleeps,
one whose CLI is missing), with tmux as the terminal where the terminal matters: why a task
failed, a task for a worker that is not running, `status` at 80 columns, unknown ids and
`--watch`, Ctrl-C while waiting, cancelling a queued and a running task, and the example
broker address.

The workers are plain commands, not LLM stand-ins: what they print and how they end is the
point here."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.tasks.client import Client
from tests.integration.test_local_up import (
    LocalFleet,
    _read_pty,
    a_local_fleet,
    processes_under,
    up_on_a_pty,
    worker,
)
from tests.support.tmux import tmux

pytestmark = pytest.mark.integration

BOOM = ["sh", "-c", "echo starting; echo 'boom: something broke' >&2; exit 3"]
ECHO = ["python3", "-c", "import sys; print('echo:', sys.stdin.read())"]
# A process tree: a shell, a sleep in the background and one in the foreground.
SLEEP = ["sh", "-c", "sleep 300 & sleep 300; wait"]
MISSING = "/nonexistent/llm"
WORKERS = (
    worker("w-boom", BOOM)
    + worker("w-echo", ECHO)
    + worker("w-sleep", SLEEP)
    + worker("w-missing", [MISSING])
)


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    with a_local_fleet() as local:
        local.write(WORKERS)
        summary = local.up()
        assert summary["started"] == ["w-boom", "w-echo", "w-sleep"], summary
        yield local


def _json(fleet: LocalFleet, *args: str, code: int = 0) -> dict[str, Any]:
    done = fleet.fleetctl(*args, "--json", check=False)
    assert done.returncode == code, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert isinstance(body, dict)
    return body


def _state(fleet: LocalFleet, task_id: str) -> dict[str, Any]:
    """The task's one target as `results --json` shows it (read in process: quick to poll)."""
    with Client.open(fleet.root / "fleet.yaml") as client:
        [result] = client.results(task_id)
    return result.as_json()


def _until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.1)


def _sleepers(fleet: LocalFleet) -> list[str]:
    return [p.cmdline for p in processes_under(fleet.root) if "sleep 300" in p.cmdline]


def _running(fleet: LocalFleet, task_id: str) -> None:
    """Until the task's CLI runs on w-sleep."""
    _until(lambda: _state(fleet, task_id)["status"] == "running" and len(_sleepers(fleet)) >= 2)


def test_a_failed_task_says_why_in_the_table_in_json_with_full_and_in_the_log(
    fleet: LocalFleet,
) -> None:
    sent = _json(fleet, "task", "send", "--to", "w-boom", "--id", "why-1", "--wait", "x", code=1)
    [failed] = sent["results"]
    assert (failed["status"], failed["exit_code"]) == ("failed", 3)
    assert failed["error"] == "exited with code 3: boom: something broke"
    assert failed["stderr_tail"] == "boom: something broke\n"
    assert failed["output"] == "starting\n"
    table = fleet.fleetctl("results", "why-1").stdout
    assert "error     exited with code 3: boom: something broke" in table
    assert "stderr:" in table and table.count("boom: something broke") == 2
    assert "stderr:" in fleet.fleetctl("results", "why-1", "--full").stdout
    log = fleet.fleetctl("logs", "w-boom").stdout
    [done] = [line for line in log.splitlines() if " task_done task_id=why-1 " in line]
    assert " warning task_done task_id=why-1 status=failed exit_code=3 " in done
    assert done.endswith('reason="exited with code 3: boom: something broke"')

    # --timeout in bare seconds, as fleet.yaml takes them; the timeout says so
    late = _json(fleet, "task", "send", "--to", "w-sleep", "--timeout", "2", "--wait", "x", code=1)
    [timed_out] = late["results"]
    assert timed_out["status"] == "timeout"
    assert timed_out["error"] == "timed out: stopped at its time limit of 2s"
    assert _sleepers(fleet) == []  # the whole tree stopped


def test_a_worker_that_is_not_running_gets_a_warning_and_the_task_waits_for_it(
    fleet: LocalFleet,
) -> None:
    sent = fleet.fleetctl("task", "send", "--to", "w-missing", "--id", "orphan-1", "hello")
    assert sent.stdout == "sent orphan-1 to w-missing\n"
    assert sent.stderr == (
        f"warning: w-missing is not running: not started by fleetctl up ({MISSING} not found "
        "(install it, or change command:)); orphan-1 waits in its queue until it runs\n"
    )
    assert _state(fleet, "orphan-1")["status"] == "queued"
    running = fleet.fleetctl("task", "send", "--to", "w-echo", "hello")
    assert running.stderr == ""  # it answers its ping: nothing to say

    both = ("--to", "w-echo", "--to", "w-missing", "--id", "orphan-2")
    refused = fleet.fleetctl("task", "send", *both, "--require-running", "hello", check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"error: w-missing is not running: not started by fleetctl up ({MISSING} not found "
        "(install it, or change command:))",
        "error: nothing was sent (start it, or send without --require-running)",
    ]
    gone = fleet.fleetctl("results", "orphan-2", check=False)
    assert gone.returncode == 1 and "no such task: orphan-2" in gone.stderr

    check = fleet.fleetctl("status", "--check", check=False)
    assert check.returncode == 1
    assert (
        "worker w-missing: 1 task queued, but it is not running (not started by fleetctl up)"
        in check.stdout
    )
    cancelled = fleet.fleetctl("task", "cancel", "orphan-1")
    assert cancelled.stdout == "w-missing: cancelled (it was queued: it will not run)\n"
    assert _state(fleet, "orphan-1")["status"] == "cancelled"


def test_results_of_an_unknown_id_exit_1_and_watch_follows_as_wait_does(
    fleet: LocalFleet,
) -> None:
    unknown = fleet.fleetctl("results", "nope-123", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "error: no such task: nope-123 (the bus has no record of it and no result)\n"
    )
    fleet.fleetctl("task", "send", "--to", "w-sleep", "--id", "watch-1", "x")
    watching = subprocess.Popen(
        fleet.argv("results", "watch-1", "--watch"),
        cwd=fleet.root,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watching.stderr is not None
    seen = [watching.stderr.readline()]
    while seen[-1] != "w-sleep: running\n":  # each state as it changes, as --wait shows it
        assert seen[-1] in ("w-sleep: queued\n", "w-sleep: running\n"), seen
        seen.append(watching.stderr.readline())
    assert fleet.fleetctl("task", "cancel", "watch-1").returncode == 0
    table, rest = watching.communicate(timeout=60)
    assert rest == "w-sleep: cancelled\n"
    assert watching.returncode == 1  # as --wait: 0 only when every target completed
    assert "status    cancelled" in table

    fleet.fleetctl("task", "send", "--to", "w-echo", "--to", "w-boom", "--id", "watch-2", "x")
    mixed = fleet.fleetctl("results", "watch-2", "--watch", check=False)
    assert mixed.returncode == 1
    assert "w-boom: failed" in mixed.stderr and "w-echo: completed" in mixed.stderr
    fleet.fleetctl("task", "send", "--to", "w-echo", "--id", "watch-3", "x")
    done = fleet.fleetctl("results", "watch-3", "--watch")
    assert done.stderr.splitlines()[-1] == "w-echo: completed"
    assert "echo: x" in done.stdout


def test_ctrl_c_while_waiting_stops_the_waiting_not_the_task(fleet: LocalFleet) -> None:
    for argv in (
        ["task", "send", "--to", "w-sleep", "--id", "ctrl-1", "--wait", "x"],
        ["results", "ctrl-1", "--watch"],
    ):
        proc = subprocess.Popen(
            fleet.argv(*argv),
            cwd=fleet.root,
            env=fleet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first state: it is waiting now
        assert line.startswith("w-sleep: "), line
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the group
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert err.splitlines()[-4:] == [
            "",
            "Stopped waiting: ctrl-1 runs on (nothing was cancelled).",
            "  results  fleetctl results ctrl-1 --watch",
            "  cancel   fleetctl task cancel ctrl-1",
        ]
        assert "Aborted" not in err
    _running(fleet, "ctrl-1")  # it ran on
    assert fleet.fleetctl("task", "cancel", "ctrl-1").returncode == 0


def test_cancel_drops_a_queued_task_unrun_and_stops_a_running_ones_process_tree(
    fleet: LocalFleet,
) -> None:
    def costs() -> tuple[int, int]:
        rows = _json(fleet, "costs")["rows"]
        row = next((r for r in rows if r["key"] == "w-sleep"), {"tasks": 0, "unpriced_tasks": 0})
        return row["tasks"], row["unpriced_tasks"]

    tasks_before, unpriced_before = costs()
    fleet.fleetctl("task", "send", "--to", "w-sleep", "--id", "cancel-a", "x")
    _running(fleet, "cancel-a")
    fleet.fleetctl("task", "send", "--to", "w-sleep", "--id", "cancel-b", "y")
    assert _state(fleet, "cancel-b")["status"] == "queued"

    queued = fleet.fleetctl("task", "cancel", "cancel-b")
    assert queued.stdout == "w-sleep: cancelled (it was queued: it will not run)\n"
    shown = _state(fleet, "cancel-b")
    assert shown["status"] == "cancelled" and shown["error"].startswith("cancelled while queued")

    began = time.monotonic()
    running = fleet.fleetctl("task", "cancel", "cancel-a")
    assert running.stdout == "w-sleep: cancelled (it was running: its CLI was stopped)\n"
    assert time.monotonic() - began < 10  # SIGTERM ends `sh` and both sleeps at once
    assert _sleepers(fleet) == []  # the whole process tree
    stopped = _state(fleet, "cancel-a")
    assert stopped["status"] == "cancelled" and stopped["exit_code"] == -signal.SIGTERM
    assert stopped["error"] == "cancelled while it ran (fleetctl task cancel): its CLI was stopped"

    # w-sleep is free: it takes cancel-b off its queue and drops it, unrun, with its own result
    _until(lambda: _stored(fleet, "cancel-b"))
    dropped = _state(fleet, "cancel-b")
    assert dropped["error"] == "cancelled before it ran (fleetctl task cancel): it was not run"
    log = fleet.fleetctl("logs", "w-sleep", "-n", "200").stdout
    assert "task_cancelled task_id=cancel-b ran=false" in log
    assert "task_start task_id=cancel-b " not in log  # never run
    assert log.count("task_start task_id=cancel-a ") == 1  # and never retried
    queued_now = _json(fleet, "status")["workers"]
    assert next(w for w in queued_now if w["worker_id"] == "w-sleep")["pending"] == 0

    again = fleet.fleetctl("task", "cancel", "cancel-a", check=False)
    assert (again.returncode, again.stdout) == (
        1,
        "w-sleep: already cancelled: nothing to cancel\n",
    )
    elsewhere = fleet.fleetctl("task", "cancel", "cancel-a", "--to", "w-echo", check=False)
    assert elsewhere.returncode == 1
    assert elsewhere.stderr == "error: cancel-a was not sent to w-echo (its targets: w-sleep)\n"
    # counted in costs: both tasks; the one that ran has no price, the other ran nothing
    assert costs() == (tasks_before + 2, unpriced_before + 1)


def _stored(fleet: LocalFleet, task_id: str) -> bool:
    """Has the worker stored a result (not only the mark shown for a queued copy)?"""
    return _state(fleet, task_id)["host"] is not None


def test_status_fits_80_columns_and_watch_looks_at_the_bus_every_second(
    fleet: LocalFleet,
) -> None:
    env = fleet.env | {"TERM": "xterm-256color"}
    with tmux(fleet.root.parent) as term:
        term.run(fleet.argv("status"), env, fleet.root)
        shown = term.wait_for(lambda s: "EXIT=" in s)
        body = shown.split("EXIT=")[0]
        assert max(len(line) for line in body.splitlines()) <= 80, body
        assert "…" not in body
        for wid in ("w-boom", "w-echo", "w-sleep", "w-missing"):
            assert any(line.startswith(f"{wid}  ") for line in body.splitlines()), body

        term.run(fleet.argv("status", "--watch"), env, fleet.root)
        term.wait_for(lambda s: "the bus every 1s; Ctrl-C stops" in s)
        fleet.fleetctl("task", "send", "--to", "w-sleep", "--id", "busy-1", "x")
        began = time.monotonic()
        # in flight comes from the bus (looked at every second), not the 5 s heartbeat
        term.wait_for(lambda s: "in flight 1" in s, timeout=10)
        assert time.monotonic() - began < 4
        assert all(len(line) <= 80 for line in term.lines())
        term.keys("C-c")
        term.wait_for(lambda s: "EXIT=0" in s)
    assert fleet.fleetctl("task", "cancel", "busy-1").returncode == 0


def test_a_second_up_on_a_terminal_follows_the_running_fleets_logs(fleet: LocalFleet) -> None:
    """As compose's `up` attaches: on a terminal (a pty), once fleet.yaml is applied, every
    worker's log as the foreground `up` prints it, in colour; Ctrl-C stops the following,
    never the fleet. In a script (no terminal) `up` applies fleet.yaml and returns."""
    scripted = fleet.fleetctl("up")
    assert "The local fleet is already running" in scripted.stderr
    assert "Following" not in scripted.stderr
    proc, main = up_on_a_pty(fleet)
    seen = bytearray()
    try:
        _read_pty(main, re.compile("Following every worker's log"), proc, seen)
        fleet.fleetctl("task", "send", "--to", "w-boom", "--id", "attached-1", "x")
        shown = _read_pty(main, re.compile(r"^.*task_done task_id=attached-1.*$", re.M), proc, seen)
        [line] = [ln for ln in shown.splitlines() if "task_done task_id=attached-1" in ln]
        assert re.match(r"\x1b\[\d+mw-boom +\x1b\[0m \| \x1b\[1;33mwarning\x1b\[0m ", line), line
        assert "status=failed exit_code=3" in line
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    rest = _read_pty(main, re.compile(r"fleetctl down stops it\)\."), proc, seen)
    os.close(main)
    assert proc.returncode == 0, rest
    assert "Stopped following: the local fleet keeps running (fleetctl down stops it)." in rest
    assert fleet.pollers().keys() == {"w-boom", "w-echo", "w-sleep"}


def test_the_example_broker_address_without_a_local_fleet_says_so(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    for name in ("fleet.yaml", "servers.yaml"):
        shutil.copy(repo / name, tmp_path / name)
    began = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fleetctl"), "task", "send", "--to",
         "cmd-wordcount-01", "hello"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "error: no local fleet is running here (fleetctl up); servers.yaml's broker 192.0.2.10 "
        "is the example address (put your broker's address there, or pass --server URL)\n"
    )
    assert time.monotonic() - began < 5  # no SSH connection was tried
