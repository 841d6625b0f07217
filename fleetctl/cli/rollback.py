"""`fleetctl rollback`: the selected hosts (or workers) back to the version they had before
the last apply changed them, after showing what that changes and asking."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import (
    drain_timeout_option,
    host_option,
    known_hosts_option,
    no_drain_option,
    parallel_option,
    settle_option,
    ssh_config_option,
    yes_option,
)
from fleetctl.cli.params import duration
from fleetctl.cli.selection import select
from fleetctl.reconcile import rollback as use_case
from fleetctl.reconcile.hostapply import Settings
from fleetctl.reconcile.program import Drain
from fleetctl.reconcile.sessions import Options
from fleetctl.ui.apply_view import ProgressReporter, results_table
from fleetctl.ui.plan_view import print_plan
from fleetctl.ui.terminal import err, out


@click.command()
@host_option
@click.option(
    "--worker",
    "worker_ids",
    multiple=True,
    metavar="ID",
    help="Only this worker's own files, unit and user (repeatable).",
)
@yes_option
@parallel_option
@settle_option
@drain_timeout_option
@no_drain_option
@ssh_config_option
@known_hosts_option
@pass_app
def rollback(
    app: AppContext,
    hosts: tuple[str, ...],
    worker_ids: tuple[str, ...],
    yes: bool,
    parallel: int,
    settle: float,
    drain_timeout: str | None,
    no_drain: bool,
    ssh_config: Path | None,
    known_hosts: tuple[str, ...],
) -> None:
    """Go back to the version each host had before the last apply (all hosts, or --host,
    or --worker). Shows what that changes and asks first."""
    if no_drain and drain_timeout is not None:
        fail("--no-drain and --drain-timeout contradict each other", "use one of them")
    drain = Drain(0.0 if no_drain else duration(drain_timeout, "--drain-timeout"))
    fleet = app.fleet()
    workers = worker_ids
    selection = select(fleet, workers, hosts)
    if not yes and not sys.stdin.isatty():
        fail("refusing to roll back without a terminal to confirm on", "add --yes")
    options = Options(
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        parallel=parallel,
        command=shlex.join(["fleetctl", *sys.argv[1:]]),
        settle=settle,
    )
    pending = use_case.plan(fleet, selection, options, workers)
    try:
        print_plan(out(), pending.plan)
        if pending.empty:
            out().print("Nothing to roll back.")
            sys.exit(1 if pending.view.errors else 0)
        if not yes and not click.confirm("Roll these hosts back?", default=False, err=True):
            err().print("Nothing rolled back.")
            sys.exit(1)
        names = [h.name for h in pending.plan.hosts if h.changes]
        with ProgressReporter(err(), names) as reporter:
            results = use_case.roll_back(pending, reporter, Settings(None, drain))
    finally:
        pending.close()
    err().print(results_table(results, title="Rollback"))
    failed = [r for r in results if not r.ok]
    if failed:
        err().print(f"{len(failed)} host(s) not rolled back.", markup=False)
        sys.exit(1)
    out().print("Rollback complete.")
