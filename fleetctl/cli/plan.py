"""`fleetctl plan`: what applying the fleet would change, host by host."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from fleetctl.cli.context import AppContext, pass_app
from fleetctl.cli.options import (
    diff_option,
    host_option,
    json_option,
    known_hosts_option,
    parallel_option,
    ssh_config_option,
    worker_option,
)
from fleetctl.cli.selection import select
from fleetctl.config.model import Fleet
from fleetctl.reconcile import remembered
from fleetctl.reconcile.brokerfit import refuse_unfit
from fleetctl.reconcile.departed import departed, offline
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import Inputs, gather
from fleetctl.reconcile.observation import live_plan
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.reconcile.plan.schedule import scheduled
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.to_json import plan_to_json
from fleetctl.reconcile.plan.types import Plan
from fleetctl.reconcile.sessions import Options
from fleetctl.ui.plan_view import print_plan
from fleetctl.ui.terminal import out


@click.command()
@click.option(
    "--dry-run", is_flag=True, help="Offline: contact no host, list everything it would put there."
)
@diff_option
@worker_option
@host_option
@json_option
@click.option(
    "--detailed-exitcode",
    "detailed",
    is_flag=True,
    help="Exit 0 when there are no changes, 2 when there are, 1 on an error.",
)
@parallel_option
@ssh_config_option
@known_hosts_option
@pass_app
def plan(
    app: AppContext,
    dry_run: bool,
    show_diff: bool,
    workers: tuple[str, ...],
    hosts: tuple[str, ...],
    as_json: bool,
    detailed: bool,
    parallel: int,
    ssh_config: Path | None,
    known_hosts: tuple[str, ...],
) -> None:
    """Show what `apply` would change. Secrets show only as (sensitive, sha256:…)."""
    fleet = app.fleet()
    selection = select(fleet, workers, hosts)
    inputs = gather(fleet)  # reads the store and keys; writes nothing here
    if not dry_run:
        options = Options(
            ssh_config=ssh_config,
            known_hosts=known_hosts,
            parallel=parallel,
            with_contents=show_diff,
        )
        _live(fleet, inputs, selection, options, show_diff, as_json, detailed)
        return
    result = make_plan(
        desired_state(fleet, inputs),
        None,
        selection=selection,
        revision=fleet.revision,
        warnings=inputs.warnings,
    )
    if _whole(selection):
        result = dataclasses.replace(result, departed=offline(fleet, remembered.load(fleet)))
    _show(scheduled(result, fleet.rollout), show_diff, as_json)
    if detailed and result.pending:
        sys.exit(2)


def _whole(selection: Selection) -> bool:
    """Hosts that left servers.yaml are part of a plan of the whole fleet only."""
    return not selection.hosts and not selection.workers


def _show(result: Plan, show_diff: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plan_to_json(result, with_content=show_diff), indent=2))
    else:
        print_plan(out(), result, show_diff=show_diff)


def _live(
    fleet: Fleet,
    inputs: Inputs,
    selection: Selection,
    options: Options,
    show_diff: bool,
    as_json: bool,
    detailed: bool,
) -> None:
    """Read-only on the hosts: no lock is taken and nothing is written."""
    known = remembered.load(fleet)  # a damaged file fails before any host is contacted
    view = live_plan(fleet, inputs, selection, options, lock=False)
    refuse_unfit(view)  # a broker that could not run the nats-server it would get
    view.close()
    result = view.plan
    if _whole(selection) and departed(fleet, known):
        from fleetctl.reconcile import decommission

        result = dataclasses.replace(result, departed=decommission.live(fleet, options))
    _show(scheduled(result, fleet.rollout), show_diff, as_json)
    if view.errors or (result.bus and result.bus.error):
        sys.exit(1)  # a partial view is not "no changes", whatever the flags
    if detailed and result.pending:
        sys.exit(2)
