"""`status` and `logs -f` against a local fleet (`fleetctl up`): no SSH, the same views."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import IO

from tests.integration.test_local_up import COUNT, LocalFleet, fleet, worker

__all__ = ["fleet"]  # the fixture, shared with test_local_up


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """Each line of `stream` as it comes, read by a thread: the test waits for a line with a
    deadline instead of blocking in readline() for one that may never be written."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _a_followed_task(
    fleet: LocalFleet, follow: subprocess.Popen[str], lines: queue.Queue[str]
) -> tuple[str, str, str]:
    """The id, start and done lines of a task that `logs -f -n 0` printed as they were written.

    `-n 0` starts at the end of the log as it is when the command has started, a moment the
    test cannot see (seconds on a loaded machine). Tasks are sent until one's two lines both
    come through: with `-n 0` nothing written before that moment is printed, so they were
    followed. Each task's lines get a few seconds after its result (the log is polled every
    0.2 s) before the next task is sent."""
    seen: list[str] = []
    sent: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert follow.poll() is None, follow.communicate(timeout=10)
        task = fleet.send(["w-count"], "one two three")
        assert fleet.results(task)["w-count"]["output"].strip() == "3"
        sent.append(task.task_id)
        wait = time.monotonic() + 5
        while (left := wait - time.monotonic()) > 0:
            try:
                seen.append(lines.get(timeout=left))
            except queue.Empty:
                break
            for tid in sent:
                start = [x for x in seen if f" task_start task_id={tid}" in x]
                done = [x for x in seen if f" task_done task_id={tid} " in x]
                if start and done:
                    return tid, start[-1], done[-1]
    raise AssertionError(f"no task followed through in 90 s; sent {sent}, printed {seen}")


def test_status_and_logs_of_a_local_fleet(fleet: LocalFleet) -> None:
    missing = fleet.root / "bin" / "missing-cli"
    fleet.write(COUNT + worker("w-absent", [str(missing)]))
    assert fleet.up()["started"] == ["w-count"]
    body = json.loads(fleet.fleetctl("status", "--json").stdout)
    states = {w["worker_id"]: w["state"] for w in body["workers"]}
    assert states == {"w-count": "idle", "w-absent": "not deployed"}
    assert body["local"] is True and body["hosts"] == [] and body["problems"] == []
    follow = subprocess.Popen(
        fleet.argv("logs", "w-count", "-f", "-n", "0"),
        cwd=fleet.root,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        tid, start, done = _a_followed_task(fleet, follow, _lines(follow.stdout))
        assert " info    task_start task_id=" + tid in start
        assert f"task_done task_id={tid} status=completed exit_code=0" in done
        assert not done.lstrip().startswith("{")  # readable, not the raw JSON
    finally:
        follow.terminate()
        follow.wait(10)
    last = fleet.fleetctl("logs", "w-count", "-n", "1").stdout.splitlines()
    assert len(last) == 1
    assert fleet.fleetctl("logs", "w-absent", check=False).returncode == 1
