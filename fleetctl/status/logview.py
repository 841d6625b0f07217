"""A poller's log, readable: its JSON lines as `time level event key=value ...`.

The poller logs one JSON object per line (poller/logs.py): journald on a host, a file in the
state dir for a local fleet. Lines that are not the poller's JSON (a traceback, the shim's
`-- No entries --`) are printed as they are, with control characters escaped.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SKIPPED = ("ts", "level", "event", "worker_id")  # shown first, or known from the command


def _plain(text: str) -> str:
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if (not value or re.search(r"[\s\"=]", value)) else _plain(value)
    return json.dumps(value, default=str)


def record(line: str) -> dict[str, Any] | None:
    try:
        found = json.loads(line)
    except ValueError:
        return None
    return found if isinstance(found, dict) and "event" in found else None


def readable(line: str) -> str:
    rec = record(line)
    if rec is None:
        return _plain(line.rstrip("\n"))
    ts = rec.get("ts")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"
        if isinstance(ts, int | float)
        else "-"
    )
    fields = " ".join(f"{_plain(str(k))}={_value(v)}" for k, v in rec.items() if k not in SKIPPED)
    level = _plain(str(rec.get("level", "")))
    return f"{when} {level:<7} {_plain(str(rec.get('event')))}" + (f" {fields}" if fields else "")


def since_ok(line: str, since: float | None) -> bool:
    """Lines at or after `since` (Unix seconds); lines without a time always pass."""
    if since is None:
        return True
    rec = record(line)
    ts = rec.get("ts") if rec else None
    return not isinstance(ts, int | float) or ts >= since


def tail_file(
    path: Path,
    lines: int,
    follow: bool,
    stop: Callable[[], bool] = lambda: False,
    poll: float = 0.2,
) -> Iterator[str]:
    """The last `lines` lines of a local log, then (follow) each new one as it is written."""
    with path.open(errors="replace") as f:
        yield from deque(f, maxlen=lines)
        partial = ""
        while follow and not stop():
            chunk = f.readline()
            if not chunk:
                time.sleep(poll)
                continue
            partial += chunk
            if partial.endswith("\n"):
                yield partial
                partial = ""


def printable(lines: Iterable[str], since: float | None) -> Iterator[str]:
    for line in lines:
        if since_ok(line, since):
            yield readable(line)
