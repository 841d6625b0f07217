"""`fleetctl apply`: make the hosts match the plan it shows."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import (
    diff_option,
    drain_timeout_option,
    known_hosts_option,
    no_drain_option,
    parallel_option,
    settle_option,
    ssh_config_option,
    worker_option,
    yes_option,
)
from fleetctl.cli.params import duration
from fleetctl.cli.selection import select
from fleetctl.config.errors import BadValue
from fleetctl.config.model import Fleet, Share
from fleetctl.config.values import parse_batch
from fleetctl.identity.credentials import enabled_ids
from fleetctl.reconcile import apply as use_case
from fleetctl.reconcile.program import Drain
from fleetctl.reconcile.sessions import Options
from fleetctl.ui.apply_view import ProgressReporter, failure_summary, results_table
from fleetctl.ui.plan_view import print_plan
from fleetctl.ui.terminal import err, out


@click.command()
@click.option("--all", "everything", is_flag=True, help="Apply the whole fleet.")
@worker_option
@click.option("--issue-creds", is_flag=True, help="Issue missing NATS credentials first.")
@yes_option
@diff_option
@parallel_option
@click.option(
    "--lock-wait",
    type=click.FloatRange(0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for another apply's host lock.",
)
@settle_option
@click.option(
    "--batch",
    metavar="N|P%",
    help="Worker hosts changed at once (a number, or a share of those with changes); "
    "overrides fleet.yaml's rollout.batch.",
)
@drain_timeout_option
@no_drain_option
@ssh_config_option
@known_hosts_option
@pass_app
def apply(
    app: AppContext,
    everything: bool,
    workers: tuple[str, ...],
    issue_creds: bool,
    yes: bool,
    show_diff: bool,
    parallel: int,
    lock_wait: float,
    settle: float,
    batch: str | None,
    drain_timeout: str | None,
    no_drain: bool,
    ssh_config: Path | None,
    known_hosts: tuple[str, ...],
) -> None:
    """Show the plan, ask, then change the hosts. A second apply changes nothing.

    The broker hosts go first, then the worker hosts in batches (fleet.yaml `rollout:`);
    each host is checked, then confirmed, or rolled back to its previous version."""
    if everything == bool(workers):
        fail("say what to apply", "use --all, or --worker ID (repeatable)")
    if no_drain and drain_timeout is not None:
        fail("--no-drain and --drain-timeout contradict each other", "use one of them")
    drain = Drain(0.0 if no_drain else duration(drain_timeout, "--drain-timeout"))
    size = _batch(batch)
    fleet = app.fleet()
    selection = select(fleet, workers, ())
    if not yes and not sys.stdin.isatty():
        fail("refusing to apply without a terminal to confirm on", "add --yes")
    if issue_creds:
        _report_issued(fleet, use_case.issue_credentials(fleet, workers or enabled_ids(fleet)))
    options = Options(
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        parallel=parallel,
        lock_wait=lock_wait,
        command=shlex.join(["fleetctl", *sys.argv[1:]]),
        with_contents=show_diff,
        settle=settle,
    )
    try:
        how = use_case.settings(fleet, options, drain)
        pending = use_case.plan(
            fleet, selection, options, workers=workers, everything=everything, batch=size
        )
    except use_case.Refused as refused:
        fail(refused.what, refused.fix)
    try:
        print_plan(out(), pending.shown, show_diff=show_diff)
        if pending.converged:
            use_case.remember_converged(pending)
            sys.exit(1 if pending.view.errors else 0)
        if not yes and not click.confirm("Apply these changes?", default=False, err=True):
            err().print("Nothing applied.")
            sys.exit(1)
        with ProgressReporter(err(), [h.name for h in pending.view.plan.hosts]) as reporter:
            results = use_case.apply(pending.view, reporter, how=how)
    finally:
        pending.close()
    err().print(results_table(results))
    if any(not r.ok for r in results):
        err().print(failure_summary(results), markup=False)
        sys.exit(1)
    out().print("Apply complete.")


def _batch(value: str | None) -> Share | None:
    if value is None:
        return None
    try:
        return Share.of_value(parse_batch(value))
    except BadValue as e:
        fail(f"--batch {e.what}", e.fix)


def _report_issued(fleet: Fleet, done: use_case.Issued) -> None:
    if done.created_operator:
        err().print(f"Created NATS operator {fleet.creds.operator!r}.", markup=False)
    for user in done.issued:
        err().print(f"Issued NATS credentials: {user}", markup=False)
    for user in done.renewed:
        err().print(f"Renewed expiring NATS credentials: {user}", markup=False)
