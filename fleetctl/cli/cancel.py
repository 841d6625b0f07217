"""`fleetctl task cancel TASK [--to WORKER]`: a queued copy will not run, a running one has its
CLI stopped; each ends as `cancelled` (fleetctl/tasks/cancelling.py, poller/cancel.py)."""

from __future__ import annotations

import json
import sys

import click

from fleetctl.cli.bus import task_client
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import bus_options, json_option
from fleetctl.cli.params import duration
from fleetctl.cli.waiting import INTERRUPTED
from fleetctl.tasks.client import Cancel, NoSuchTask, Sent
from fleetctl.tasks.messages import Result, TaskError, check_task_id
from fleetctl.tasks.reach import BusOptions
from fleetctl.ui.terminal import err, out

CANCEL_WAIT = 30.0  # seconds `task cancel` waits for running copies to stop (grace: 10 s)


@click.command()
@click.argument("task_id")
@click.option(
    "--to",
    "only",
    multiple=True,
    metavar="ID",
    help="Only its copy on this worker (repeatable); default: every target.",
)
@click.option(
    "--wait-timeout",
    "wait_for",
    metavar="DURATION",
    help="How long to wait for running copies to stop [default: 30s].",
)
@json_option
@bus_options
@pass_app
def cancel(
    app: AppContext,
    task_id: str,
    only: tuple[str, ...],
    wait_for: str | None,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """Cancel TASK_ID on each of its targets (or --to WORKER): a queued copy will not run,
    a running one has its CLI's processes stopped (SIGTERM, then SIGKILL after the
    worker's grace). Either way its result is `cancelled`, and it is never retried.

    Exit 0 when every copy asked is cancelled; 1 when there was nothing to cancel (every
    target already has a result) or a running copy did not stop in time."""
    try:
        check_task_id(task_id)
    except TaskError as e:
        fail(str(e))
    seconds = duration(wait_for, "--wait-timeout") or CANCEL_WAIT
    with task_client(app, bus) as client:
        try:
            cancels = client.cancel(task_id, only)
        except NoSuchTask as e:
            fail(str(e))
        asked = [c for c in cancels if c.asked]
        now: dict[str, Result] = {}
        if asked:
            sent = Sent(task_id, tuple(c.target for c in asked))
            try:
                ended = client.wait(sent, seconds)
            except KeyboardInterrupt:
                err().print(
                    f"\nStopped waiting: the cancel was sent; `fleetctl results {task_id} "
                    "--watch` shows how each copy ends.",
                    markup=False,
                )
                sys.exit(INTERRUPTED)
            now = {c.target.key: r for c, r in zip(asked, ended, strict=True)}
    lines = [_cancelled(task_id, c, now.get(c.target.key), seconds) for c in cancels]
    if as_json:
        body = {"version": 1, "task_id": task_id, "targets": [line[1] for line in lines]}
        click.echo(json.dumps(body, indent=2))
    else:
        for text, _ in lines:
            out().print(text, markup=False, highlight=False)
    done = bool(asked) and all(now[c.target.key].status == "cancelled" for c in asked)
    sys.exit(0 if done else 1)


def _cancelled(
    task_id: str, c: Cancel, now: Result | None, waited: float
) -> tuple[str, dict[str, object]]:
    """One target's line, and its entry in --json."""
    key, was = c.target.key, c.was.status
    entry: dict[str, object] = {"worker_id": key, "was": was}
    if now is None:
        entry |= {"status": was, "error": None}
        return f"{key}: already {was}: nothing to cancel", entry
    entry |= {"status": now.status, "error": now.reason}
    if now.status == "cancelled":
        how = (
            "it was queued: it will not run"
            if was == "queued"
            else "it was running: its CLI was stopped"
        )
        return f"{key}: cancelled ({how})", entry
    if now.final:
        return f"{key}: {now.status} before the cancel reached it", entry
    return (
        f"{key}: cancel sent, but still {now.status} after {waited:.0f}s (its poller may be "
        f"cut off from the broker: fleetctl status; fleetctl results {task_id} --watch "
        "shows how it ends)",
        entry,
    )
