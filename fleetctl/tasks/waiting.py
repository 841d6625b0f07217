"""Waiting for results: follow the results stream from where it ended when the wait began,
and look again at the copies still without a result now and then (queued, running,
dead-lettered)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from fleetctl.bus import taskbus
from fleetctl.bus.client import BusError
from fleetctl.tasks import activity
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.messages import Result
from fleetctl.tasks.record import Sent
from fleetctl.tasks.whereabouts import progress, whereabouts

# Seconds between looks at the results stream while nothing is new: from the first to the
# last, doubling, back to the first when a result arrives (quick answers seen quickly, a
# long task costs ten small requests a second).
POLL_FIRST, POLL_LAST = 0.002, 0.1
PROGRESS_EVERY = 1.0  # seconds between looks at the consumers (queued / running)
# A request to a cluster's stream goes unanswered while the stream elects a new leader (its
# leader's broker died): asked again for this long before the wait gives up.
LEADER_WAIT = 20.0

T = TypeVar("T")


async def _patiently(conn: Connection, ask: Callable[[], Awaitable[T]]) -> T:
    """`ask()`, again while the bus errs with the connection still up (a stream without a
    leader for a moment), for up to LEADER_WAIT."""
    given_up = time.monotonic() + LEADER_WAIT
    while True:
        try:
            return await ask()
        except BusError:
            if not conn.nc.is_connected or time.monotonic() > given_up:
                raise
        await asyncio.sleep(0.5)


async def wait(
    conn: Connection,
    sents: Sequence[Sent],
    timeout: float | None,
    on_update: Callable[[list[Result]], None] | None,
) -> list[Result]:
    """Each target's result once every one has one (or was dead-lettered), or its last
    known state when `timeout` seconds have passed; `on_update` sees every change."""
    n = conn.names
    deadline = None if timeout is None else time.monotonic() + timeout
    await activity.follow(conn)
    cursor = await _patiently(
        conn, lambda: taskbus.last_seq(conn.nc, n.results_stream, n.all_results)
    )
    cursor += 1
    keys = [(t.key, s.task_id) for s in sents for t in s.targets]
    states = dict(zip(keys, await _patiently(conn, lambda: progress(conn, sents)), strict=True))
    queued = {  # (worker, task id) of a route's member -> that route target's key
        (m, s.task_id): (t.key, s.task_id) for s in sents for t in s.targets for m in t.members
    }
    if on_update is not None:
        on_update(list(states.values()))
    last_look = time.monotonic()
    pause = POLL_FIRST
    while any(not r.final for r in states.values()):
        if deadline is not None and time.monotonic() > deadline:
            break
        ask = {"seq": cursor, "next_by_subj": n.all_results, "batch": taskbus.BATCH}
        batch = await _patiently(
            conn, functools.partial(taskbus.direct_batch, conn.nc, n.results_stream, ask)
        )
        changed = False
        for m in batch:
            cursor = m.seq + 1
            who = n.attribution(m.subject)
            body = m.json()
            if who is None or not isinstance(body, dict):
                continue
            key = who if who in states else queued.get(who)
            if key is not None and (key == who or not states[key].final):
                states[key] = Result(who[0], str(body.get("status", "?")), body)
                changed = True
        if not batch:
            if time.monotonic() - last_look >= PROGRESS_EVERY:
                last_look = time.monotonic()
                changed = (
                    await _patiently(conn, lambda: _look_again(conn, sents, states))
                    or on_update is not None
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_LAST)
        else:
            pause = POLL_FIRST
        if changed and on_update is not None:
            on_update(list(states.values()))
    return list(states.values())


async def _look_again(
    conn: Connection, sents: Sequence[Sent], states: dict[tuple[str, str], Result]
) -> bool:
    """Dead letters and queued/running, for the targets still without a result."""
    waiting = [
        (s.task_id, t) for s in sents for t in s.targets if not states[(t.key, s.task_id)].final
    ]
    now = await whereabouts(conn, waiting)
    changed = any(states[k].status != r.status for k, r in now.items())
    states |= now
    return changed
