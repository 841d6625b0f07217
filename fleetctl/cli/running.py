"""Which of a task's targets are not running, and why, for `task send` to warn (or, with
`--require-running`, refuse) before the task waits in a queue nobody takes it from.

A local fleet (`fleetctl up`) names the workers it started, and why it did not start the
others; any other worker runs when its poller answers a ping (fleetctl/tasks/liveness.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetctl.bus.localfleet import default_state_dir, local_fleet
from fleetctl.cli.context import AppContext
from fleetctl.local.state import StateDir, read_json
from fleetctl.tasks.client import Client
from fleetctl.tasks.reach import BusOptions

NOT_ANSWERING = (
    "its poller does not answer a ping (stopped, not deployed, or cut off from the broker: "
    "fleetctl status)"
)


def not_running(
    app: AppContext, bus: BusOptions, client: Client, workers: Sequence[str]
) -> dict[str, str] | None:
    """Each worker of `workers` that is not running, with why; None when it cannot be told
    (creds issued before the publisher could ping: the send goes on unchecked)."""
    local = None if bus.server else local_fleet(app.fleet_path)
    why: dict[str, str] = {}
    if local is not None:
        reasons = _not_started(app)
        for w in workers:
            if w not in local.workers:
                said = reasons.get(w)
                why[w] = "not started by fleetctl up" + (f" ({said})" if said else "")
    asked = [w for w in workers if w not in why]
    answered = client.running(asked) if asked else set()
    if answered is None:
        return why or None
    for w in asked:
        if w not in answered:
            why[w] = (
                f"started by fleetctl up, but its poller does not answer a ping (fleetctl logs {w})"
                if local is not None
                else NOT_ANSWERING
            )
    return why


def _not_started(app: AppContext) -> dict[str, str]:
    """Why the local fleet's supervisor did not start (or could not ready) each worker."""
    status: Any = read_json(StateDir(default_state_dir(app.fleet_path)).supervisor_json) or {}
    outcome = status.get("outcome") or {} if isinstance(status, dict) else {}
    entries = [*(outcome.get("not_started") or []), *(outcome.get("not_ready") or [])]
    return {
        str(e["worker_id"]): str(e.get("reason", ""))
        for e in entries
        if isinstance(e, dict) and "worker_id" in e
    }


def describe(group: Sequence[str], why: dict[str, str]) -> str:
    """One target (or the workers that may take one copy) not running, in words."""
    if len(group) == 1:
        return f"{group[0]} is not running: {why[group[0]]}"
    each = "; ".join(f"{w}: {why[w]}" for w in group)
    return f"none of {', '.join(group)} is running ({each})"
