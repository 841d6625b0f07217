"""Waiting on a task's targets from a command (`task send --wait`, `results --watch`, `task
cancel`): following them with live progress, showing the results, and what Ctrl-C means."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

import click

from fleetctl.cli.context import AppContext
from fleetctl.tasks.client import Client, Sent
from fleetctl.tasks.messages import Result, results_json
from fleetctl.ui.terminal import err, out

INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def stopped_waiting(app: AppContext, task_id: str) -> NoReturn:
    """Ctrl-C while waiting: only the waiting stops. Say so, and how to follow the task
    or cancel it; exit 130."""
    fleet = "" if _default_fleet(app) else f" -f {shlex.quote(str(app.fleet_path))}"
    err().print(
        f"\nStopped waiting: {task_id} runs on (nothing was cancelled).\n"
        f"  results  fleetctl{fleet} results {task_id} --watch\n"
        f"  cancel   fleetctl{fleet} task cancel {task_id}",
        markup=False,
        highlight=False,
    )
    sys.exit(INTERRUPTED)


def _default_fleet(app: AppContext) -> bool:
    """Would a command run here find the same fleet file without -f?"""
    return bool(os.environ.get("FLEETCTL_FLEET")) or app.fleet_path == Path("fleet.yaml")


def follow(client: Client, sent: Sent, timeout: float | None, *, quiet: bool) -> list[Result]:
    """Wait for every target, showing each one's state as it changes (not with --json)."""
    from fleetctl.ui.results_view import Progress

    if quiet:
        return client.wait(sent, timeout)
    with Progress(err()) as progress:
        return client.wait(sent, timeout, progress.update)


def show(task_id: str, results: list[Result], *, as_json: bool, full: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(results_json(task_id, results), indent=2))
        return
    from fleetctl.ui.results_view import side_by_side

    side_by_side(out(), task_id, results, full=full)
