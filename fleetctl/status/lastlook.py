"""The last look from this machine (`status.json` in the state dir): the dead-letter stream's
last sequence then, so `fleetctl status` counts the dead letters that are new since."""

from __future__ import annotations

import json
from pathlib import Path

from fleetctl.status.report import BrokerStatus
from nsc.fsutil import SECRET_MODE, atomic_write

LAST_LOOK = "status.json"


def last_dead_seq(state_dir: Path) -> int | None:
    """The dead-letter stream's last sequence at the last look from this machine."""
    try:
        data = json.loads((state_dir / LAST_LOOK).read_text())
    except (OSError, ValueError):
        return None
    seq = data.get("dead_last_seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) else None


def remember_look(state_dir: Path, broker: BrokerStatus) -> None:
    """Written only after a look that reached the broker; 0600 like the rest of the state."""
    state_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": 1, "dead_last_seq": broker.dead_last_seq})
    atomic_write(state_dir / LAST_LOOK, text, SECRET_MODE)


def count_new_dead(broker: BrokerStatus, before: int | None) -> None:
    """Dead letters stored since the last look (every one kept, on the first look)."""
    if before is None or before > broker.dead_last_seq:  # first look, or a new stream
        broker.new_dead_letters = broker.dead_letters
    else:
        broker.new_dead_letters = broker.dead_last_seq - before
