"""`status` and `logs -f` against a local fleet (`fleetctl up`): no SSH, the same views."""

from __future__ import annotations

import json
import subprocess
import time

from tests.integration.test_local_up import COUNT, LocalFleet, fleet, worker

__all__ = ["fleet"]  # the fixture, shared with test_local_up


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
        time.sleep(0.5)  # -f is reading from the end
        sent = fleet.send(["w-count"], "one two three")
        assert fleet.results(sent)["w-count"]["output"].strip() == "3"
        assert follow.stdout is not None
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen.append(follow.stdout.readline())
            if " task_done " in seen[-1]:
                break
        start, done = [line for line in seen if sent.task_id in line][-2:]
        assert " info    task_start task_id=" + sent.task_id in start
        assert f"task_done task_id={sent.task_id} status=completed exit_code=0" in done
        assert not done.lstrip().startswith("{")  # readable, not the raw JSON
    finally:
        follow.terminate()
        follow.wait(10)
    last = fleet.fleetctl("logs", "w-count", "-n", "1").stdout.splitlines()
    assert len(last) == 1
    assert fleet.fleetctl("logs", "w-absent", check=False).returncode == 1
