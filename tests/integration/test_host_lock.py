"""The host lock program, run locally through the local transport: exclusive, tells who holds
it, waits when asked, lapses when its holder's heartbeats stop, and answers observe requests."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from fleetctl.hostside import lock_program
from fleetctl.transport.base import Held
from fleetctl.transport.local import LocalTransport

PROGRAM = lock_program()


def hold(
    lock: Path, who: str, wait: float = 0, lease: float = 30
) -> tuple[Held, dict[str, object]]:
    info = json.dumps({"owner": who, "since": "now", "command": f"apply by {who}"})
    held = LocalTransport("here").hold(
        [sys.executable, "-I", "-S", "-c", PROGRAM, str(lock), info, str(wait), str(lease)]
    )
    return held, json.loads(held.readline())


def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "apply.lock"
    first, answer = hold(lock, "alice")
    assert answer == {"locked": True}
    second, answer = hold(lock, "bob")
    assert answer["locked"] is False
    assert answer["holder"] == {"owner": "alice", "since": "now", "command": "apply by alice"}
    second.close()
    first.close()
    third, answer = hold(lock, "carol")
    assert answer == {"locked": True}
    third.close()


def test_a_waiting_holder_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    lock = tmp_path / "apply.lock"
    first, _ = hold(lock, "alice")
    started = time.monotonic()
    import threading

    threading.Timer(0.5, first.close).start()
    second, answer = hold(lock, "bob", wait=10)
    assert answer == {"locked": True}
    assert 0.4 < time.monotonic() - started < 5
    second.close()


def test_the_lock_lapses_without_heartbeats_and_holds_with_them(tmp_path: Path) -> None:
    lock = tmp_path / "apply.lock"
    holder, _ = hold(lock, "alice", lease=1)
    for _ in range(8):  # heartbeats for 1.6 s, longer than the lease
        holder.send(b"\n")
        time.sleep(0.2)
    assert hold(lock, "bob")[1]["locked"] is False
    time.sleep(1.5)  # then the network "breaks": the holder's channel stays open, silent
    third, answer = hold(lock, "carol")
    assert answer == {"locked": True}
    third.close()
    holder.close()


def test_the_holder_answers_observe_requests(tmp_path: Path) -> None:
    held, _ = hold(tmp_path / "apply.lock", "alice")
    request = {"op": "observe", "state_dir": str(tmp_path), "files": [str(tmp_path / "x")]}
    held.send(json.dumps(request).encode() + b"\n")
    answer = json.loads(held.readline())
    assert answer["files"] == {str(tmp_path / "x"): None}
    assert answer["manifest"] is None
    held.close()
