"""What the workers are doing now, for `task send --wait` and `results --watch`: their status
heartbeats (core NATS, `<prefix>.worker.<id>.status`, docs/messages.md), followed while a
command waits, each attributed by the subject it came on (only that worker may publish
there). Credentials issued before the publisher could read heartbeats see none: the wait
goes on without them."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fleetctl.tasks.connection import Connection


async def follow(conn: Connection) -> None:
    """Keep `conn.beats` up to date with every worker's latest heartbeat (once per
    connection; a refused subscription leaves it empty)."""
    if conn.following:
        return
    conn.following = True
    prefix, suffix = conn.names.status("*").split("*")

    async def on_beat(msg: Any) -> None:
        worker = msg.subject[len(prefix) : len(msg.subject) - len(suffix)]
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        if isinstance(body, dict) and worker:
            conn.beats[worker] = body

    try:
        await conn.nc.subscribe(conn.names.status("*"), cb=on_beat)
    except Exception:  # old creds: not allowed to; nothing to show then
        return


def running(
    beats: Mapping[str, Mapping[str, Any]], workers: Sequence[str], task_id: str
) -> dict[str, Any] | None:
    """The `in_flight` entry of `task_id` in one of `workers`' heartbeats, with `worker_id`."""
    for worker in workers:
        for entry in (beats.get(worker) or {}).get("in_flight") or ():
            if isinstance(entry, dict) and entry.get("task_id") == task_id:
                return {"worker_id": worker, **entry}
    return None


def paused(
    beats: Mapping[str, Mapping[str, Any]], workers: Sequence[str], now: float | None = None
) -> dict[str, Any] | None:
    """Why the first of `workers` that is paused fetches nothing now, and until when."""
    now = time.time() if now is None else now
    for worker in workers:
        beat = beats.get(worker) or {}
        until = beat.get("paused_until")
        if isinstance(until, int | float) and until > now:
            reason = beat.get("pause_reason")
            return {"worker_id": worker, "paused_until": until, "pause_reason": reason}
    return None


def describe(entry: Mapping[str, Any]) -> str:
    """`turn 3, Edit, 18.2k tokens, $0.0412`: what a running task is doing (from its worker's
    heartbeat), the parts it has."""
    parts = []
    if isinstance(entry.get("turn"), int) and entry["turn"] > 0:
        parts.append(f"turn {entry['turn']}")
    if entry.get("tool"):
        parts.append(str(entry["tool"]))
    tokens = entry.get("tokens")
    if isinstance(tokens, int) and tokens > 0:
        parts.append(f"{tokens / 1000:.1f}k tokens" if tokens >= 1000 else f"{tokens} tokens")
    cost = entry.get("cost_usd")
    if isinstance(cost, int | float):
        parts.append(f"${cost:.4f}")
    return ", ".join(parts)


def pause_text(pause: Mapping[str, Any]) -> str:
    """`paused: rate limited until 14:05` (local time)."""
    until = pause.get("paused_until")
    when = time.strftime("%H:%M", time.localtime(until)) if isinstance(until, int | float) else "?"
    return f"paused: {pause.get('pause_reason') or 'paused'} until {when}"
