"""The last look from this machine: written whole, private, and read back."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from fleetctl.status.lastlook import LAST_LOOK, last_dead_seq, remember_look
from fleetctl.status.report import BrokerStatus


def test_the_last_look_is_written_private_and_whole_and_read_back(tmp_path: Path) -> None:
    state_dir = tmp_path / ".fleetctl"
    assert last_dead_seq(state_dir) is None  # never looked
    remember_look(state_dir, BrokerStatus(reachable=True, dead_last_seq=7))
    path = state_dir / LAST_LOOK
    assert json.loads(path.read_text()) == {"version": 1, "dead_last_seq": 7}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert last_dead_seq(state_dir) == 7
    remember_look(state_dir, BrokerStatus(reachable=True, dead_last_seq=9))
    assert last_dead_seq(state_dir) == 9
    assert sorted(p.name for p in state_dir.iterdir()) == [LAST_LOOK]  # no temp file left


def test_an_unreadable_last_look_counts_as_none(tmp_path: Path) -> None:
    (tmp_path / LAST_LOOK).write_text('{"dead_last_seq": "7"}')
    assert last_dead_seq(tmp_path) is None
    (tmp_path / LAST_LOOK).write_text("not json")
    assert last_dead_seq(tmp_path) is None
