"""`fleetctl tasks`: recent tasks and where each stands on each of its targets."""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from fleetctl.cli.bus import task_client
from fleetctl.cli.context import AppContext, pass_app
from fleetctl.cli.options import bus_options, json_option, since_option
from fleetctl.cli.params import duration
from fleetctl.tasks.reach import BusOptions
from fleetctl.ui.results_view import STYLES
from fleetctl.ui.terminal import out


@click.command()
@since_option("1h")
@click.option("--worker", metavar="ID", help="Only this worker's.")
@json_option
@bus_options
@pass_app
def tasks(
    app: AppContext,
    since: str,
    worker: str | None,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """Tasks sent recently (from their records), with their state per target: queued,
    running, completed, failed, timeout, rejected, dead-lettered, lost; and any answer from
    a worker the task was not sent to, marked unsolicited."""
    seconds = duration(since, "--since") or 3600.0
    with task_client(app, bus) as client:
        rows = client.tasks(seconds, worker)
    if as_json:
        body = {"version": 1, "tasks": [r.as_json() for r in rows]}
        click.echo(json.dumps(body, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for name in ("TASK", "SINCE", "TARGETS"):
        table.add_column(name)
    for row in rows:
        states = Text()
        for wid, state in row.states.items():
            states.append(f"{wid} ")
            states.append(state, STYLES.get(state, ""))
            states.append("  ")
        for wid, state in row.unsolicited.items():
            states.append(f"{wid} {state} ")
            states.append("(unsolicited)", "bold red")
            states.append("  ")
        table.add_row(Text(row.task_id), Text(row.at[:19]), states)
    out().print(table if rows else Text("no tasks in that time"))
