"""What one running task is doing now: its turn, the tool it is in, tokens and cost so far.

The delivery flow makes one per task it runs; the CLI's stream reader (poller/streams.py)
updates it as events arrive, and the heartbeat (poller/heartbeat.py) reports it as one entry
of `in_flight` (docs/messages.md, "Status").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Activity:
    task_id: str
    started: float = field(default_factory=time.time)  # Unix seconds
    since: float = field(default_factory=time.monotonic)
    turn: int = 0  # model turns seen so far (0: none yet, or a CLI that does not say)
    tool: str | None = None  # the tool call under way, if any
    tokens: int | None = None  # input + output tokens reported so far
    cost_usd: float | None = None  # cost reported (or priced) so far

    @property
    def step(self) -> tuple[int, str | None]:
        """Where the task is: its turn and the tool under way. A change of it is worth a
        heartbeat soon (poller/heartbeat.py); tokens alone change with every event."""
        return self.turn, self.tool

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "started": round(self.started, 3),
            "running_s": round(now - self.since, 1),
            "turn": self.turn,
            "tool": self.tool,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
        }
