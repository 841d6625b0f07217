"""The local fleet's console: every worker's log line prefixed with its id, as the foreground
`fleetctl up` prints it (and an attached second `up`, and the detached supervisor's log).

On a terminal, each worker's prefix has its own colour and the level its own, and a warning
or an error is highlighted whole: a failed task is the line to see. What a line carries
comes from the pollers and, through a failure's reason, from the CLIs they run, so every
control character in it is printed escaped (`\\x1b`) before any colour is added: no line can
move the cursor, retitle the terminal or forge a colour (docs/security.md, "A compromised
agent"). Piped or redirected output, and NO_COLOR, get no colour codes at all.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from typing import IO, Any

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
RESET = "\x1b[0m"
PREFIX_COLOURS = ("36", "35", "34", "32", "33", "96", "95", "94", "92", "93")  # SGR codes
LEVEL_COLOURS = {"debug": "2", "info": "32", "warning": "1;33", "error": "1;31"}
HIGHLIGHT = {"warning": "33", "error": "31"}  # the rest of a warning's or an error's line
SKIPPED = ("ts", "level", "event", "worker_id")  # the worker is the prefix; time is now
CRASH_LOOP = "supervisor: crash loop"  # fleetctl/local/children.py


def plain(text: str) -> str:
    """`text` with every control character written as `\\xNN`."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def wants_colour(stream: IO[str], environ: dict[str, str] | None = None) -> bool:
    """Colour only on a terminal, and not with NO_COLOR (no-color.org) or TERM=dumb."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def parsed(line: str) -> tuple[str | None, str]:
    """A poller's JSON log line as (level, `event key=value ...`), escaped; any other line
    (a traceback, a supervisor note) as (None, the line escaped)."""
    try:
        record: Any = json.loads(line)
    except ValueError:
        return None, plain(line)
    if not isinstance(record, dict) or "event" not in record:
        return None, plain(line)
    fields = " ".join(
        f"{plain(str(k))}={plain(str(v))}" for k, v in record.items() if k not in SKIPPED
    )
    level = record.get("level")
    text = f"{plain(str(record['event']))} {fields}".rstrip()
    return (plain(level) if isinstance(level, str) else None), text


class Console:
    """Writes each worker's lines, whole, one at a time (pollers' readers are threads)."""

    def __init__(self, stream: IO[str] | None = None, colour: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.colour = wants_colour(self.stream) if colour is None else colour
        self.width = 12
        self._lock = threading.Lock()
        self._colours: dict[str, str] = {}

    def format(self, who: str, line: str) -> str:
        level, text = parsed(line)
        loud = level if level in HIGHLIGHT else None
        if level is None and text.startswith(CRASH_LOOP):
            loud = "error"  # a worker that keeps dying is as loud as an error
        name = f"{plain(who):<{self.width}}"
        if not self.colour:
            return f"{name} | {level} {text}" if level else f"{name} | {text}"
        colour = self._colours.setdefault(who, PREFIX_COLOURS[len(self._colours) % 10])
        shown = f"\x1b[{LEVEL_COLOURS.get(level, '0')}m{level}{RESET} " if level else ""
        rest = f"\x1b[{HIGHLIGHT[loud]}m{text}{RESET}" if loud else text
        return f"\x1b[{colour}m{name}{RESET} | {shown}{rest}"

    def say(self, who: str, line: str) -> None:
        formatted = self.format(who, line)
        with self._lock:
            self.stream.write(formatted + "\n")
            self.stream.flush()
