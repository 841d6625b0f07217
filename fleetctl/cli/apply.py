"""`fleetctl apply`: make the hosts match the plan it shows."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import click

from fleetctl import credentials, departed, remembered, rollout, tunnelkeys
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import (
    diff_option,
    known_hosts_option,
    parallel_option,
    ssh_config_option,
    worker_option,
    yes_option,
)
from fleetctl.cli.selection import select
from fleetctl.inputs import gather, tunnel_hosts
from fleetctl.model import Fleet
from fleetctl.observation import live_plan
from fleetctl.sessions import Options
from fleetctl.ui.apply_view import ProgressReporter, results_table
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
    ssh_config: Path | None,
    known_hosts: tuple[str, ...],
) -> None:
    """Show the plan, ask, then change the hosts. A second apply changes nothing."""
    if everything == bool(workers):
        fail("say what to apply", "use --all, or --worker ID (repeatable)")
    fleet = app.fleet()
    selection = select(fleet, workers, ())
    if not yes and not sys.stdin.isatty():
        fail("refusing to apply without a terminal to confirm on", "add --yes")
    if issue_creds:
        _issue(fleet, list(workers) or credentials.enabled_ids(fleet))
    tunnelkeys.ensure(fleet, tunnel_hosts(fleet))  # the only step that writes keys here
    options = Options(
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        parallel=parallel,
        lock_wait=lock_wait,
        command=shlex.join(["fleetctl", *sys.argv[1:]]),
        with_contents=show_diff,
    )
    known = remembered.load(fleet)  # a damaged file fails before any host is touched
    view = live_plan(fleet, gather(fleet), selection, options, lock=True)
    try:
        gone = departed.offline(fleet, known) if everything else ()
        print_plan(out(), dataclasses.replace(view.plan, departed=gone), show_diff=show_diff)
        if view.plan.summary.empty:  # the hosts reached are as applied: remember them
            remembered.remember(fleet, [remembered.entry(view, n) for n in view.sessions])
            sys.exit(1 if view.errors else 0)
        if not yes and not click.confirm("Apply these changes?", default=False, err=True):
            err().print("Nothing applied.")
            sys.exit(1)
        hosts = [h.name for h in view.plan.hosts]
        with ProgressReporter(err(), hosts) as reporter:
            record = remembered.Recorder(view)
            try:
                results = rollout.apply(view, reporter, on_applied=record)
            finally:
                record.flush()
    finally:
        view.close()
    err().print(results_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        err().print(
            f"{len(failed)} host(s) failed. Fix the cause and run apply again: "
            "it finishes what is left.",
            markup=False,
        )
        sys.exit(1)
    out().print("Apply complete.")


def _issue(fleet: Fleet, worker_ids: list[str]) -> None:
    authority, created = credentials.init(fleet)
    if created:
        err().print(f"Created NATS operator {fleet.creds.operator!r}.", markup=False)
    enabled = set(credentials.enabled_ids(fleet))
    targets = [w for w in worker_ids if w in enabled]
    issued = credentials.issue(fleet, authority, targets)
    for user in sorted(issued):
        err().print(f"Issued NATS credentials: {user}", markup=False)
    for user in credentials.renew_expiring(fleet, authority, targets):
        err().print(f"Renewed expiring NATS credentials: {user}", markup=False)
