"""When heartbeats go out: the pacer's rule as data (told the time, no clock), then the
heartbeat loop itself with a publisher in memory."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from typing import Any

from poller.activity import Activity
from poller.heartbeat import ACTIVITY_GAP, CHANGE_SETTLE, Pacer, Stats, beat

Event = tuple[float, str]  # (when, "change" | "step")


def beats(events: list[Event], until: float, interval: float = 5.0) -> list[float]:
    """When heartbeats go out from 0 to `until` (the first at 0) with `events` at their
    times: a beat goes out whenever it falls due before the next event."""
    pacer = Pacer(interval)
    sent: list[float] = []
    for at, kind in [*events, (until, "end")]:
        while pacer.due <= at:
            sent.append(round(max(pacer.due, 0.0), 3))
            pacer.sent(max(pacer.due, 0.0))
        if kind == "change":
            pacer.changed(at)
        elif kind == "step":
            pacer.stirred(at)
    return sent


def r(seconds: float) -> float:
    return round(seconds, 3)


def test_quiet_a_heartbeat_goes_out_each_interval() -> None:
    assert beats([], until=12) == [0, 5, 10]


def test_a_step_after_a_quiet_while_goes_out_at_once_and_the_interval_starts_again() -> None:
    assert beats([(2.0, "step")], until=12) == [0, r(2 + CHANGE_SETTLE), r(7 + CHANGE_SETTLE)]


def test_steps_in_quick_succession_make_at_most_one_heartbeat_a_second() -> None:
    """A CLI calling a tool every 0.1 s for 5 s: one heartbeat a second, each showing the
    step then, not fifty."""
    steps = [(round(0.05 + i / 10, 2), "step") for i in range(50)]
    assert beats(steps, until=16) == [0, 1, 2, 3, 4, 5, 10, 15]


def test_a_change_goes_out_at_once_even_just_after_a_step_made_one() -> None:
    """A task that ends (a change) is not held back by the step rate limit, and the next
    step waits a gap after that heartbeat."""
    events = [(0.5, "step"), (1.2, "change"), (1.3, "step")]
    settle = CHANGE_SETTLE
    assert beats(events, until=7) == [0, 1, r(1.2 + settle), r(2.2 + settle)]


def test_a_burst_of_changes_makes_one_heartbeat() -> None:
    events = [(3.0, "change"), (3.01, "change"), (3.02, "step"), (3.03, "change")]
    assert beats(events, until=9) == [0, r(3 + CHANGE_SETTLE), r(8 + CHANGE_SETTLE)]


def test_steps_alone_never_beat_more_than_once_a_gap_and_each_is_followed_by_one() -> None:
    """Random steps (seeded): consecutive heartbeats are at least ACTIVITY_GAP apart, and a
    heartbeat follows every step within ACTIVITY_GAP plus the settle time."""
    rng = random.Random(7)
    at, steps = 0.0, []
    while at < 60:
        at = round(at + rng.choice((0.001, 0.01, 0.1, 0.4, 0.9, 1.5, 3.0)), 3)
        steps.append((at, "step"))
    sent = beats(steps, until=70)
    assert all(b - a >= ACTIVITY_GAP - 1e-9 for a, b in itertools.pairwise(sent))
    for at, _ in steps:
        assert any(at < b <= at + ACTIVITY_GAP + CHANGE_SETTLE + 1e-9 for b in sent), at
    assert len(sent) <= 70 / ACTIVITY_GAP + 1


def test_the_snapshot_says_its_interval_and_keeps_every_field() -> None:
    stats = Stats("w1", "claude", "zai", 1, interval=0.5)
    snap = stats.snapshot()
    assert snap["heartbeat_interval_s"] == 0.5
    assert list(snap) == [
        "version",
        "worker_id",
        "state",
        "status",
        "current_tasks",
        "in_flight",
        "draining",
        "drain_until",
        "paused_until",
        "pause_reason",
        "concurrency",
        "counts",
        "backend",
        "llm",
        "labels",
        "poller_version",
        "host",
        "uptime_s",
        "heartbeat_interval_s",
        "ts",
    ]
    assert Stats("w1", "claude", "zai", 1).snapshot()["heartbeat_interval_s"] == 5.0


class Publisher:
    """What `beat` publishes, with when (monotonic)."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        assert subject == "af.worker.w1.status"
        self.sent.append((time.monotonic(), json.loads(payload)))
        self.arrived.set()

    async def next(self) -> dict[str, Any]:
        await asyncio.wait_for(self.arrived.wait(), 10)
        self.arrived.clear()
        return self.sent[-1][1]


def test_the_loop_publishes_a_step_but_not_before_a_gap_after_the_last_heartbeat() -> None:
    """With an hour between heartbeats, only a step or a change makes one: a step just
    after a heartbeat goes out no sooner than ACTIVITY_GAP after it, with the step in it;
    a change (the task ended) goes out without waiting."""

    async def go() -> None:
        stats = Stats("w1", "claude", "zai", 1, interval=3600)
        pub = Publisher()
        beating = asyncio.create_task(beat(pub, "af.worker.w1.status", stats))
        try:
            assert (await pub.next())["in_flight"] == []
            stats.running[1] = doing = Activity("t1")
            doing.turn, doing.tool = 1, "Read"
            stats.stir()
            stepped = await pub.next()
            assert [(t["turn"], t["tool"]) for t in stepped["in_flight"]] == [(1, "Read")]
            assert pub.sent[1][0] - pub.sent[0][0] >= ACTIVITY_GAP
            del stats.running[1]
            stats.touch()
            assert (await pub.next())["in_flight"] == []
            assert len(pub.sent) == 3
        finally:
            beating.cancel()

    asyncio.run(go())
