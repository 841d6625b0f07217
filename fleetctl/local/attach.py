"""A second `fleetctl up` on a terminal while a detached fleet runs attaches to it, as
compose's `up` does: once fleet.yaml is applied, every worker's log is followed and printed as
the foreground `up` prints it, until Ctrl-C (which stops the following, not the fleet) or the
fleet stops. In a script (no terminal) `up` returns once fleet.yaml is applied, as before.

It reads the same log files the supervisor writes (one per worker in the state dir), from
where they end when it attaches; a worker started later is followed from its first line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from fleetctl.local.console import Console
from fleetctl.local.state import StateDir

POLL = 0.2  # seconds between looks at the log files


def follow(
    state: StateDir,
    workers: Sequence[str],
    console: Console,
    running: Callable[[], bool],
    poll: float = POLL,
) -> None:
    """Print each worker's new log lines until `running()` says the fleet stopped."""
    offsets = {w: _size(state, w) for w in workers}
    partial = dict.fromkeys(workers, b"")
    console.width = max([12, *(len(w) for w in workers)])
    while True:
        alive = running()  # asked first: lines written before it stopped are still printed
        for worker in workers:
            try:
                with state.log(worker).open("rb") as f:
                    f.seek(0, 2)
                    if f.tell() < offsets[worker]:  # truncated: from its start again
                        offsets[worker] = 0
                    f.seek(offsets[worker])
                    chunk = f.read()
            except FileNotFoundError:
                continue
            offsets[worker] += len(chunk)
            *lines, partial[worker] = (partial[worker] + chunk).split(b"\n")
            for line in lines:
                console.say(worker, line.decode(errors="replace"))
        if not alive:
            return
        time.sleep(poll)


def _size(state: StateDir, worker: str) -> int:
    try:
        return state.log(worker).stat().st_size
    except FileNotFoundError:
        return 0
