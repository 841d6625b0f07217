"""`fleetctl plan`: what applying the fleet would change, host by host."""

from __future__ import annotations

import json

import click

from fleetctl import credentials
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import host_option, json_option, worker_option
from fleetctl.cli.selection import select
from fleetctl.desired import desired_state
from fleetctl.plan import make_plan
from fleetctl.plan_json import plan_to_json
from fleetctl.ui.plan_view import print_plan
from fleetctl.ui.terminal import out


@click.command()
@click.option("--dry-run", is_flag=True, help="Offline: contact no host, list everything.")
@click.option("--diff", "show_diff", is_flag=True, help="Show file contents and changes.")
@worker_option
@host_option
@json_option
@pass_app
def plan(
    app: AppContext,
    dry_run: bool,
    show_diff: bool,
    workers: tuple[str, ...],
    hosts: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show what `apply` would change. Secrets show only as (sensitive, sha256:…)."""
    fleet = app.fleet()
    selection = select(fleet, workers, hosts)
    if not dry_run:
        fail(
            "the live plan, which reads the hosts over SSH, is not available in this version",
            "use `fleetctl plan --dry-run` for the offline plan",
        )
    inputs = credentials.plan_inputs(fleet)
    desired = desired_state(fleet, auth_config=inputs.auth_config, creds=inputs.creds)
    result = make_plan(
        desired, None, selection=selection, revision=fleet.revision, warnings=inputs.warnings
    )
    if as_json:
        click.echo(json.dumps(plan_to_json(result, with_content=show_diff), indent=2))
    else:
        print_plan(out(), result, show_diff=show_diff)
