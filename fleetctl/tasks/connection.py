"""One client's connection to the bus and what every conversation over it needs: the fleet
(its workers and routes), its names, who sends, and when each copy was first seen running."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetctl.bus.names import NatsNames
from fleetctl.config.model import Fleet
from fleetctl.tasks.record import Sender


@dataclass
class Connection:
    nc: Any
    fleet: Fleet
    names: NatsNames
    sender: Sender
    unrecordable: str | None  # why these creds may not write task records (None: they may)
    cancels_readable: bool = True  # may these creds read cancel marks (fleetctl/tasks/cancelling)
    # (target key, task id) -> when its copy was first seen running (time.monotonic())
    running_since: dict[tuple[str, str], float] = field(default_factory=dict)
    # worker id -> its latest status heartbeat, once followed (tasks/activity.py)
    beats: dict[str, dict[str, Any]] = field(default_factory=dict)
    following: bool = False
    reads_records: bool = False  # these creds read records without writing them (the dashboard)
    # may these creds read judgments (creds issued before them may not: a refused read is
    # only a timeout, so it is not asked)
    reads_judgments: bool = True

    @property
    def unreadable(self) -> str | None:
        """Why these creds may not read task records (None: they may)."""
        if self.unrecordable is None or self.reads_records:
            return None
        return self.unrecordable.replace("may not write", "may not read")
