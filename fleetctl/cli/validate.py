"""`fleetctl validate`: every problem in both files at once, or a one-line all-clear."""

from __future__ import annotations

import json
import sys

import click

from fleetctl.cli.context import AppContext, pass_app
from fleetctl.cli.options import json_option
from fleetctl.config.errors import ConfigError
from fleetctl.config.loader import load_fleet
from fleetctl.config.thismachine import LOCAL_SERVERS
from fleetctl.ui.problems import print_problems
from fleetctl.ui.terminal import out


@click.command()
@json_option
@pass_app
def validate(app: AppContext, as_json: bool) -> None:
    """Check fleet.yaml and servers.yaml; exit 1 listing every problem."""
    try:
        fleet = load_fleet(app.fleet_path, app.servers(local=True))
    except ConfigError as exc:
        if as_json:
            problems = [
                {
                    "file": p.mark.file,
                    "line": p.mark.line,
                    "column": p.mark.col,
                    "field": p.field,
                    "message": p.what,
                    "fix": p.fix,
                }
                for p in exc.problems
            ]
            click.echo(
                json.dumps({"format_version": 1, "valid": False, "problems": problems}, indent=2)
            )
        else:
            print_problems(exc.problems)
        sys.exit(1)
    enabled = sum(w.enabled for w in fleet.workers)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "format_version": 1,
                    "valid": True,
                    "problems": [],
                    "workers": len(fleet.workers),
                    "enabled": enabled,
                    "hosts": len(fleet.hosts),
                },
                indent=2,
            )
        )
        return
    if app.servers(local=True) == LOCAL_SERVERS:
        out().print(
            f"{app.fleet_path}: valid ({_count(len(fleet.workers), 'worker')}, {enabled} "
            "enabled, on this machine: there is no servers.yaml, so `fleetctl up` runs them here)",
            markup=False,
        )
        return
    out().print(
        f"{app.fleet_path}, {app.servers_path}: valid "
        f"({_count(len(fleet.workers), 'worker')}, {enabled} enabled, "
        f"on {_count(len(fleet.hosts), 'host')})",
        markup=False,
    )


def _count(n: int, noun: str) -> str:
    """`1 host`, `3 hosts`: a one-host fleet read `on 1 hosts`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
