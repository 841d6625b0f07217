"""The attack of issue #21 run again against the final code, and the variations its fixes
might have missed: each attempt with a fleet identity's own issued creds on a real broker,
real pollers and the real `fleetctl` commands. docs/security.md ("Attack replay") lists every
attempt, what was expected, what was observed, and the test that shows it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.nscfleet import (
    connect,
)
from tests.support.poller_harness import run
from tests.support.taskfleet import FLEETCTL, TaskFleet, task_fleet

pytestmark = pytest.mark.integration

ESC, CSI = "\x1b", "\x9b"  # a terminal's escape, and its one-byte C1 form
# What a compromised worker writes where fleetctl prints it: clear the screen, move up and
# erase the line above (where "(unsolicited)" stands), conceal, a hyperlink, the clipboard.
HOSTILE = (
    f"{ESC}[2J{ESC}[1A{ESC}[2K{ESC}[8mhidden{ESC}]8;;http://evil.example/{ESC}\\link"
    f"{ESC}]52;c;cHduZWQ={ESC}\\{CSI}31mred\rover\bback\x07"
)


def _json(tf: TaskFleet, *args: str, admin: bool = False) -> dict[str, Any]:
    done = tf.fleetctl(*args, "--json", admin=admin)
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


async def _as_worker(tf: TaskFleet, worker: str, subject: str, data: bytes) -> None:
    """A plain JetStream publish with a worker's own creds: what a compromised agent does."""
    n = tf.fleet.names
    async with connect(tf.url, tf.fleet.workers[worker], n.inbox_prefix(worker)) as conn:
        await conn.nc.jetstream().publish(subject, data, timeout=5)


def _no_terminal_codes(done: subprocess.CompletedProcess[str]) -> None:
    for stream in (done.stdout, done.stderr):
        assert not any(c in stream for c in (ESC, CSI, "\r", "\b", "\x07")), repr(stream)


def test_what_a_worker_writes_reaches_no_terminal_as_codes(tmp_path: Path) -> None:
    """A compromised worker answers a task it was never sent, dead-letters one and answers
    pings with terminal codes in every field fleetctl prints: `results`, `dead list`,
    `dead show` and `status` show them escaped (`\\x1b`), so nothing of it can clear the
    screen, erase the "(unsolicited)" line above it, hide text or set the clipboard."""
    with task_fleet(tmp_path, {"w1": {}, "w2": {"enabled": False}, "w3": {}}) as tf:
        _json(tf, "task", "send", "hi", "--to", "w1", "--id", "t1", "--wait")
        forged = {
            "version": 1,
            "task_id": "t1",
            "status": "completed",
            "output": f"fine\n{HOSTILE}\n",
            "model": HOSTILE,
            "host": HOSTILE,
            "llm": HOSTILE,
            "error": HOSTILE,
            "exit_code": HOSTILE,
            "git": {"branch": HOSTILE, "commit": HOSTILE},
        }
        n = tf.fleet.names
        run(_as_worker(tf, "w3", n.result("w3", "t1"), json.dumps(forged).encode()))
        letter = {"task_id": "t1", "reason": HOSTILE, "task": HOSTILE, "at": HOSTILE}
        run(_as_worker(tf, "w3", n.dead("w3"), json.dumps(letter).encode()))

        for args in (["results", "t1"], ["results", "t1", "--full"], ["results", "t1", "--diff"]):
            shown = tf.fleetctl(*args)
            assert shown.returncode == 0, shown.stderr
            _no_terminal_codes(shown)
            assert "\\x1b[" in shown.stdout and "\\x9b" in shown.stdout, shown.stdout
        assert "(unsolicited)" in tf.fleetctl("results", "t1").stdout
        dead = tf.fleetctl("dead", "list")
        _no_terminal_codes(dead)
        assert "\\x1b" in dead.stdout
        [seq] = [d["seq"] for d in _json(tf, "dead", "list")["dead"]]
        show = tf.fleetctl("dead", "show", str(seq))
        _no_terminal_codes(show)
        assert show.stdout.count("\\x1b[2J") >= 2, show.stdout

        async def answer_pings() -> subprocess.CompletedProcess[str]:
            async with connect(tf.url, tf.fleet.workers["w3"], n.inbox_prefix("w3")) as w3:
                beat = {"worker_id": "w3", "poller_version": HOSTILE, "state": HOSTILE}

                async def pong(msg: Any) -> None:
                    await msg.respond(json.dumps(beat).encode())

                tf.pollers["w3"].stop()  # the attacker answers in its place
                await w3.nc.subscribe(n.ping("w3"), cb=pong)
                argv = [FLEETCTL, "status", "--no-hosts"]
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    env=tf.env(admin=True),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await proc.communicate()
                return subprocess.CompletedProcess(
                    argv, proc.returncode or 0, out.decode(), err.decode()
                )

        status = run(answer_pings())
        _no_terminal_codes(status)
        assert "\\x1b[2J" in status.stdout, status.stdout
