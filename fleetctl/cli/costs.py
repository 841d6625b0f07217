"""`fleetctl costs`: what the stored results cost, summed by worker, model, llm, label or day."""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from fleetctl.cli.bus import task_client
from fleetctl.cli.context import AppContext, pass_app
from fleetctl.cli.options import bus_options, json_option, since_option
from fleetctl.cli.params import duration
from fleetctl.tasks.ledger import BY, ledger
from fleetctl.tasks.reach import BusOptions
from fleetctl.ui.terminal import out


@click.command()
@since_option(None)
@click.option(
    "--by", "by", type=click.Choice(BY), default="worker", show_default=True, help="One row per."
)
@json_option
@bus_options
@pass_app
def costs(app: AppContext, since: str | None, by: str, as_json: bool, bus: BusOptions) -> None:
    """The cost ledger: tasks, tokens and USD from the stored results, with the total.

    Costs are the results' own (priced by the poller from fleet.yaml `prices:`, or reported
    by the CLI); `UNPRICED` counts results with tokens but no cost."""
    seconds = duration(since, "--since")
    fleet = app.fleet(local=True)
    with task_client(app, bus) as client:
        stored = client.stored_results(seconds)
    book = ledger(stored, by, {w.id: w.labels for w in fleet.workers})
    if as_json:
        click.echo(json.dumps(book.as_json(), indent=2))
        return
    table = Table(box=None, pad_edge=False)
    table.add_column(by.upper())
    for name in ("TASKS", "INPUT", "OUTPUT", "USD", "UNPRICED"):
        table.add_column(name, justify="right")
    for row in book.rows:
        table.add_row(
            Text(row.key),
            str(row.tasks),
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.cost_usd:.4f}",
            str(row.unpriced_tasks or ""),
        )
    unpriced = sum(r.unpriced_tasks for r in book.rows)
    table.add_row(
        Text("total", style="bold"),
        str(sum(r.tasks for r in book.rows)),
        f"{sum(r.input_tokens for r in book.rows):,}",
        f"{sum(r.output_tokens for r in book.rows):,}",
        Text(f"{book.total_usd:.4f}", style="bold"),
        str(unpriced or ""),
    )
    out().print(table if book.rows else Text("no results stored in that time"))
