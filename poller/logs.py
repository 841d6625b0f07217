"""Structured logs: one JSON object per line on stderr, for journald and log shippers.

Callers pass facts as keyword fields. Prompts and task output are never passed at INFO; the
delivery code logs sizes instead.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, level: str = "info", stream: TextIO | None = None, **base: Any) -> None:
        self.threshold = _LEVELS[level]
        self.stream = stream or sys.stderr
        self.base = base

    def log(self, level: str, event: str, **fields: Any) -> None:
        if _LEVELS[level] < self.threshold:
            return
        record = {"ts": round(time.time(), 3), "level": level, "event": event}
        record.update(self.base)
        record.update(fields)
        try:
            self.stream.write(json.dumps(record, default=str) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must never take a task down

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)
