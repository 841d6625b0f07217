"""`fleetctl results TASK_ID`: every worker's result of a task, side by side."""

from __future__ import annotations

import json
import time

import click

from fleetctl.bus.reach import BusOptions
from fleetctl.cli.bus import task_client
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import bus_options, json_option, watch_option
from fleetctl.cli.task import show
from fleetctl.client import Client
from fleetctl.taskmsg import Result, TaskError, check_task_id, results_json
from fleetctl.ui.terminal import err, out

WATCH_EVERY = 0.5


def _all(client: Client, task_id: str) -> list[Result]:
    """Stored results, plus the targets whose copy is still queued, running or dead."""
    got = {r.worker_id: r for r in client.results(task_id)}
    for row in client.tasks(since=client.fleet.nats.max_age):
        if row.task_id == task_id:
            for wid, state in row.states.items():
                got.setdefault(wid, Result(wid, state))
    return [got[w] for w in sorted(got)]


@click.command()
@click.argument("task_id")
@watch_option
@click.option("--full", is_flag=True, help="Whole outputs, not their first lines.")
@click.option("--diff", "outputs_diff", is_flag=True, help="How the workers' outputs differ.")
@json_option
@bus_options
@pass_app
def results(
    app: AppContext,
    task_id: str,
    watch: bool,
    full: bool,
    outputs_diff: bool,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """Every worker's result of TASK_ID: status, model, host, attempt, duration, tokens,
    cost, exit code and output, one column per worker."""
    try:
        check_task_id(task_id)
    except TaskError as e:
        fail(str(e))
    with task_client(app, bus) as client:
        found = _all(client, task_id)
        if watch:
            seen = {r.worker_id: r.status for r in found}
            try:
                while not found or any(not r.final for r in found):
                    time.sleep(WATCH_EVERY)
                    found = _all(client, task_id)
                    for r in found:
                        if seen.get(r.worker_id) != r.status:
                            seen[r.worker_id] = r.status
                            err().print(f"{r.worker_id}: {r.status}", markup=False)
            except KeyboardInterrupt:
                pass
    if as_json:
        click.echo(json.dumps(results_json(task_id, found), indent=2))
    elif outputs_diff:
        from fleetctl.ui.results_view import diff

        diff(out(), found)
    else:
        show(task_id, found, as_json=False, full=full)
