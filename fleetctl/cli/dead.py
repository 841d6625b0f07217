"""`fleetctl dead list|show|replay|purge`: the dead-letter stream."""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from fleetctl.cli.bus import task_client
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.groups import SuggestingGroup
from fleetctl.cli.options import bus_options, json_option, to_option
from fleetctl.tasks.reach import BusOptions
from fleetctl.ui.terminal import out


@click.group(cls=SuggestingGroup)
def dead() -> None:
    """Tasks a worker gave up on (rejected, or out of deliveries), with the reason."""


@dead.command("list")
@click.option("--worker", metavar="ID", help="Only this worker's.")
@json_option
@bus_options
@pass_app
def list_(
    app: AppContext,
    worker: str | None,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """Every dead letter: sequence, worker, task, reason."""
    with task_client(app, bus) as client:
        letters = client.dead_letters(worker)
    if as_json:
        body = {"version": 1, "dead": [d.as_json() for d in letters]}
        click.echo(json.dumps(body, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for name in ("SEQ", "WORKER", "TASK", "ATTEMPT", "AT", "REASON"):
        table.add_column(name)
    for d in letters:
        j = d.as_json()
        table.add_row(
            str(d.seq),
            Text(d.worker_id),
            Text(str(d.task_id or "-")),
            str(j["attempt"]),
            Text(str(j["at"] or "")[:19]),
            Text(str(j["reason"] or "")),
        )
    out().print(table if letters else Text("no dead letters"))


@dead.command()
@click.argument("seq", type=int)
@json_option
@bus_options
@pass_app
def show(
    app: AppContext,
    seq: int,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """One dead letter with the original task."""
    with task_client(app, bus) as client:
        letter = client.dead_letter(seq)
    if letter is None:
        fail(f"no dead letter with sequence {seq}", "see `fleetctl dead list`")
    raw = letter.task()
    task = raw.decode("utf-8", "replace") if raw is not None else None
    if as_json:
        click.echo(json.dumps(letter.as_json() | {"task": task}, indent=2))
        return
    for key, value in letter.as_json().items():
        out().print(Text(f"{key:<11}{value}"))
    out().print(Text("task       " + (task if task is not None else "(too large to keep)")))


@dead.command()
@click.argument("seq", type=int)
@to_option
@bus_options
@pass_app
def replay(
    app: AppContext,
    seq: int,
    to: tuple[str, ...],
    bus: BusOptions,
) -> None:
    """Send a dead letter's original task again (to its worker, or --to), with a new
    dedup id so the duplicate window does not drop it."""
    with task_client(app, bus) as client:
        sent = client.replay(seq, to)
    for t in sent.targets:
        out().print(Text(f"replayed {sent.task_id} to {t.worker_id}"))


@dead.command()
@click.option("--worker", metavar="ID", help="Only this worker's.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@bus_options
@pass_app
def purge(
    app: AppContext,
    worker: str | None,
    yes: bool,
    bus: BusOptions,
) -> None:
    """Remove dead letters (of one worker)."""
    if not yes and not click.confirm(f"Remove the dead letters of {worker or 'every worker'}?"):
        fail("nothing was removed")
    with task_client(app, bus) as client:
        removed = client.purge_dead(worker)
    out().print(Text(f"removed {removed} dead letter(s)"))
