"""Options shared by several commands, each defined once."""

from __future__ import annotations

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (versioned schema) instead of text."
)
worker_option = click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="ID",
    help="Only this worker and what it needs on its host (repeatable).",
)
host_option = click.option(
    "--host", "hosts", multiple=True, metavar="NAME", help="Only this host (repeatable)."
)
