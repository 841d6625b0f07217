"""`fleetctl task send`, `results`, `tasks` and `dead` on a real broker with real pollers
(stand-in CLIs), reached as a coordinator elsewhere would: FLEETCTL_NATS_URL/_CREDS with the
publisher's least-privilege creds."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.poller_harness import directive
from tests.support.poller_harness import run as asyncio_run
from tests.support.taskfleet import TaskFleet, task_fleet

pytestmark = pytest.mark.integration

WORKERS: dict[str, dict[str, Any]] = {
    "w1": {"lang": "go", "role": "developer", "labels": {"tier": "cheap"}},
    "w2": {"lang": "go", "role": "reviewer", "labels": {"tier": "cheap"}},
    "w3": {"lang": "python", "role": "reviewer"},
    "w4": {"lang": "go", "enabled": False},
}
ROUTES = {"review": {"select": {"role": "reviewer"}, "pick": "all"}}


@pytest.fixture
def tf(tmp_path: Path) -> Iterator[TaskFleet]:
    with task_fleet(tmp_path, WORKERS, ROUTES) as fleet:
        yield fleet


def send_json(tf: TaskFleet, *args: str) -> tuple[int, dict[str, Any], str]:
    done = tf.fleetctl("task", "send", *args, "--json")
    body = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, body, done.stderr


def test_fan_out_runs_once_on_every_target_and_the_same_id_again_runs_nothing(
    tf: TaskFleet,
) -> None:
    prompt = directive(by_worker={"w1": "one\ntwo\n", "w2": "one\n2\n", "w3": "one\ntwo\n"})
    args = ("--to", "w1", "--to", "w2", "--to", "w3", "--id", "fan-1")
    code, body, err = send_json(tf, prompt, *args, "--wait", "--wait-timeout", "30s")
    assert code == 0, err
    results = body["results"]
    assert isinstance(results, list)
    assert [(r["worker_id"], r["status"]) for r in results] == [
        ("w1", "completed"),
        ("w2", "completed"),
        ("w3", "completed"),
    ]
    assert {r["worker_id"]: r["output"] for r in results}["w2"] == "one\n2\n"
    assert [r.get("labels") for r in results] == [{"tier": "cheap"}, {"tier": "cheap"}, None]
    assert [len(tf.runs(w)) for w in ("w1", "w2", "w3")] == [1, 1, 1]

    again = tf.fleetctl("task", "send", prompt, *args)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("was already sent to it") == 3
    time.sleep(1.5)  # time enough for a poller to pick up a second copy, if there were one
    assert [len(tf.runs(w)) for w in ("w1", "w2", "w3")] == [1, 1, 1]
    assert tf.stored_tasks() == 3  # the second copies were never stored

    diff = tf.fleetctl("results", "fan-1", "--diff")
    assert diff.returncode == 0, diff.stderr
    assert "--- w1\n+++ w2\n" in diff.stdout
    assert "-two\n+2\n" in diff.stdout
    assert "w1 and w3: same output" in diff.stdout

    table = tf.fleetctl("results", "fan-1")
    assert table.returncode == 0
    for wid in ("w1", "w2", "w3"):
        assert wid in table.stdout
    listed = json.loads(tf.fleetctl("tasks", "--json").stdout)
    assert listed["version"] == 1
    (row,) = [t for t in listed["tasks"] if t["task_id"] == "fan-1"]
    assert sorted((t["worker_id"], t["state"]) for t in row["targets"]) == [
        ("w1", "completed"),
        ("w2", "completed"),
        ("w3", "completed"),
    ]


def test_select_and_route_reach_exactly_the_matching_workers(tf: TaskFleet) -> None:
    code, body, err = send_json(tf, "hello", "--select", "lang=go", "--select", "tier=cheap")
    assert code == 0, err
    assert [t["worker_id"] for t in body["sent"]] == ["w1", "w2"]  # w4 matches but is disabled
    code, body, err = send_json(tf, "hello", "--route", "review", "--wait")
    assert code == 0, err
    assert [r["worker_id"] for r in body["results"]] == ["w2", "w3"]
    code, body, err = send_json(tf, "hello", "--select", "lang=go", "--any")
    assert code == 0, err
    assert len(body["sent"]) == 1 and body["sent"][0]["worker_id"] in ("w1", "w2")


def test_unknown_disabled_and_unmatched_targets_exit_1_and_publish_nothing(
    tf: TaskFleet,
) -> None:
    for args, says in [
        (("--to", "w11"), "'w11': no such worker in the fleet (did you mean 'w1'?)"),
        (("--to", "w4"), "'w4': the worker is disabled"),
        (("--to", "w1", "--to", "nope"), "'nope': no such worker"),
        (("--select", "lang=rust"), "'lang=rust' matches no worker"),
        (("--select", "lnag=go"), "did you mean 'lang'?"),
        (("--route", "reveiw"), "did you mean 'review'?"),
        ((), "no target"),
        # `^...$` let a trailing newline through, into subjects the poller then could not use
        (("--to", "w1", "--id", "t1\n"), "--id: task id 't1\\n' must be 1-128 letters"),
    ]:
        done = tf.fleetctl("task", "send", "hello", *args)
        assert done.returncode == 1, (args, done.stderr)
        assert says in done.stderr, (args, done.stderr)
        assert "nothing was sent" in done.stderr
        assert "Traceback" not in done.stderr
    too_big = tf.fleetctl("task", "send", "--to", "w1", "--file", "-", stdin="x" * 1_100_000)
    assert too_big.returncode == 1
    assert "the bus takes at most" in too_big.stderr
    assert tf.stored_tasks() == 0


def test_a_target_whose_poller_does_not_answer_gets_a_warning_or_with_require_running_nothing(
    tf: TaskFleet,
) -> None:
    """Reached as a coordinator elsewhere: a worker runs when its poller answers a ping."""
    tf.pollers["w2"].stop()
    stored = tf.stored_tasks()
    code, body, err = send_json(tf, "hello", "--to", "w1", "--to", "w2", "--id", "alive-1")
    assert code == 0 and [t["worker_id"] for t in body["sent"]] == ["w1", "w2"]
    assert err == (
        "warning: w2 is not running: its poller does not answer a ping (stopped, not "
        "deployed, or cut off from the broker: fleetctl status); alive-1 waits in its queue "
        "until it runs\n"
    )
    assert tf.stored_tasks() == stored + 2  # sent all the same: the queue keeps it
    code, _, err = send_json(tf, "hello", "--to", "w1", "--to", "w2", "--require-running")
    assert code == 1 and "error: w2 is not running: its poller does not answer a ping" in err
    assert tf.stored_tasks() == stored + 2  # nothing was sent
    code, _, err = send_json(tf, "hello", "--to", "w1", "--to", "w3", "--require-running")
    assert (code, err) == (0, "")


def test_a_failed_target_makes_wait_exit_1(tf: TaskFleet) -> None:
    done = tf.fleetctl(
        "task", "send", directive(exit=3), "--to", "w1", "--id", "bad-1", "--wait", "--json"
    )
    assert done.returncode == 1
    (result,) = json.loads(done.stdout)["results"]
    assert result["status"] == "failed" and result["exit_code"] == 3


def test_dead_letters_are_listed_shown_replayed_elsewhere_and_purged(tmp_path: Path) -> None:
    broken = {"env": {"COMMAND_ARGV": json.dumps(["/nonexistent/cli"])}}
    with task_fleet(tmp_path, {"w1": broken, "w2": {}}) as tf:
        done = tf.fleetctl("task", "send", "hello", "--to", "w1", "--id", "dl-1", "--wait")
        assert done.returncode == 1
        assert "w1: dead-lettered" in done.stderr
        listed = json.loads(tf.fleetctl("dead", "list", "--json").stdout)
        assert listed["version"] == 1
        (letter,) = listed["dead"]
        assert (letter["worker_id"], letter["task_id"]) == ("w1", "dl-1")
        shown = json.loads(tf.fleetctl("dead", "show", str(letter["seq"]), "--json").stdout)
        assert json.loads(shown["task"])["instructions"] == "hello"

        replay = tf.fleetctl("dead", "replay", str(letter["seq"]), "--to", "w2")
        assert replay.returncode == 0, replay.stderr
        assert replay.stdout.strip() == "replayed dl-1 to w2"
        watched = json.loads(tf.fleetctl("results", "dl-1", "--watch", "--json").stdout)
        by_worker = {r["worker_id"]: r["status"] for r in watched["results"]}
        assert by_worker == {"w1": "dead-lettered", "w2": "completed"}
        # the replay is a send: the task's record names both targets now
        assert [t["worker_id"] for t in watched["record"]["targets"]] == ["w1", "w2"]
        assert watched["record"]["sends"] == 2

        purged = tf.fleetctl("dead", "purge", "--worker", "w1", "--yes")
        assert purged.stdout.strip() == "removed 1 dead letter(s)"
        assert json.loads(tf.fleetctl("dead", "list", "--json").stdout)["dead"] == []


def test_the_python_api_example_runs_as_documented(tf: TaskFleet) -> None:
    import subprocess
    import sys

    from tests.support.poller_harness import REPO

    example = REPO / "examples" / "fan_out.py"
    env = tf.env() | {"PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(example), str(tf.fleet_path), "w1", "w3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "w1: completed: done: 27 bytes",
        "w3: completed: done: 27 bytes",
    ]
    assert [len(tf.runs(w)) for w in ("w1", "w2", "w3")] == [1, 0, 1]


QUEUE = {f"q{i}": {"lang": "go"} for i in (1, 2, 3)} | {"q4": {"lang": "python"}}


def test_a_pick_any_route_is_a_shared_queue_its_idle_members_take_evenly(
    tmp_path: Path,
) -> None:
    from fleetctl.tasks.client import Client

    with task_fleet(tmp_path, QUEUE, {"go": {"select": {"lang": "go"}, "pick": "any"}}) as tf:
        creds = tf.fleet.publisher.creds_path
        with Client.open(tf.fleet_path, server=tf.url, creds=creds) as client:
            sents = [client.send(directive(sleep=0.2), route="go") for _ in range(30)]
            assert {(t.route, t.worker_id) for s in sents for t in s.targets} == {("go", "")}
            results = client.wait(sents, timeout=60)
        assert all(r.ok for r in results), results
        ran = {w: len(tf.runs(w)) for w in QUEUE}
        assert ran["q4"] == 0 and sum(ran.values()) == 30, ran
        assert all(9 <= ran[w] <= 11 for w in ("q1", "q2", "q3")), ran  # within one of even
        assert asyncio_run(_refused_pull(tf, "q4", "route-go"))  # not a member: the server says no
        # each task ran once, on the member whose subject holds its result
        assert sorted(r.worker_id for r in results) == sorted(
            w for w, n in ran.items() for _ in range(n)
        )


async def _refused_pull(tf: TaskFleet, worker: str, consumer: str) -> bool:
    from tests.support.nscfleet import connect

    async with connect(tf.url, tf.fleet.workers[worker], f"_INBOX_{worker}") as conn:
        await conn.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.AF_TASKS.{consumer}", b"{}")
        await conn.wait_violation(f"CONSUMER.MSG.NEXT.AF_TASKS.{consumer}")
    return True


def test_a_route_task_whose_member_dies_is_finished_once_by_another(tmp_path: Path) -> None:
    import signal

    from tests.support.poller_harness import wait_until

    route = {"go": {"select": {"lang": "go"}, "pick": "any"}}
    with task_fleet(tmp_path, QUEUE, route, ack_wait=2) as tf:
        done = tf.fleetctl("task", "send", directive(sleep=3), "--route", "go", "--id", "orphan-1")
        assert done.returncode == 0, done.stderr

        def started() -> str | None:
            return next((w for w in ("q1", "q2", "q3") if tf.runs(w)), None)

        assert asyncio_run(wait_until(lambda: started() is not None, 20))
        first = started()
        assert first is not None
        tf.pollers[first].signal(signal.SIGKILL)
        waited = tf.fleetctl("results", "orphan-1", "--watch", "--json", timeout=90)
        results = json.loads(waited.stdout)["results"]
        completed = [r for r in results if r["status"] == "completed"]
        assert len(completed) == 1 and completed[0]["worker_id"] != first, results
        assert sum(len(tf.runs(w)) for w in ("q1", "q2", "q3")) == 2  # the killed run, one more


def test_wait_and_watch_say_what_a_running_task_is_doing(tmp_path: Path) -> None:
    """From the worker's heartbeats (the publisher may read them): its turn, tool and tokens
    while it runs, line by line as they change. Its interval is an hour: every heartbeat
    seen while the task runs follows a step of it (poller/heartbeat.py), none is sampled.
    The stand-in holds each run until the command following it says it is running, so the
    steps come while it follows them."""
    env = {"MODEL_BACKEND": "claude", "HEARTBEAT_INTERVAL": "3600"}
    workers: dict[str, dict[str, Any]] = {"w1": {"env": env}}
    with task_fleet(tmp_path, workers) as tf:
        hold = tmp_path / "hold"
        # ten turns of the stand-in claude, 0.3 s apart, each a call of `Read`
        task = directive(hold_while=str(hold), ticks=10)
        hold.touch()
        sending = tf.popen("task", "send", task, "--to", "w1", "--id", "act-1", "--wait")
        lines = _followed(sending, hold)
        assert sending.returncode == 0, lines
        doing = [ln for ln in lines if ln.startswith("w1: running: turn")]
        assert doing and all(" tokens" in ln for ln in doing), lines
        assert any(", Read, " in ln for ln in doing), lines  # the tool under way
        assert lines[-1] == "w1: completed"

        hold.touch()
        started = tf.fleetctl("task", "send", task, "--to", "w1", "--id", "act-2")
        assert started.returncode == 0, started.stderr
        lines = _followed(tf.popen("results", "act-2", "--watch"), hold)
        assert any(ln.startswith("w1: running: turn") for ln in lines), lines
        assert lines[-1] == "w1: completed"


def _followed(command: subprocess.Popen[str], hold: Path) -> list[str]:
    """Every line `command` writes on stderr, to its end; once it says w1 is running (it
    follows the heartbeats by then), the held run is let go on."""
    assert command.stderr is not None
    lines = []
    for line in command.stderr:
        lines.append(line.rstrip("\n"))
        if line.startswith("w1: running"):
            hold.unlink(missing_ok=True)
    command.communicate(timeout=60)
    return lines
