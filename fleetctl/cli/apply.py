"""`fleetctl apply`: make the hosts match the plan it shows."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import click

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
from fleetctl.config.model import Fleet
from fleetctl.identity import credentials, tunnelkeys
from fleetctl.reconcile import departed, remembered, rollout
from fleetctl.reconcile.inputs import gather, tunnel_hosts
from fleetctl.reconcile.observation import live_plan
from fleetctl.reconcile.sessions import Options
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
@click.option(
    "--settle",
    type=click.FloatRange(0, 600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a started unit must stay up (then its poller must answer a ping).",
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
    settle: float,
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
    inputs = gather(fleet)
    lacking = [w for w in (workers or credentials.enabled_ids(fleet)) if w in inputs.missing_creds]
    if lacking:
        fail(
            f"no NATS credentials for {', '.join(lacking)}: their pollers could not start",
            "add --issue-creds, or run `fleetctl creds issue --all` first",
        )
    if inputs.pending_tunnel_keys:  # the only step that writes keys here; then read them
        tunnelkeys.ensure(fleet, tunnel_hosts(fleet))
        inputs = gather(fleet)
    options = Options(
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        parallel=parallel,
        lock_wait=lock_wait,
        command=shlex.join(["fleetctl", *sys.argv[1:]]),
        with_contents=show_diff,
        settle=settle,
    )
    known = remembered.load(fleet)  # a damaged file fails before any host is touched
    view = live_plan(fleet, inputs, selection, options, lock=True)
    try:
        gone = departed.offline(fleet, known) if everything else ()
        print_plan(out(), dataclasses.replace(view.plan, departed=gone), show_diff=show_diff)
        unseen = bool(view.plan.bus and view.plan.bus.error)  # applied once it answers
        if view.plan.summary.empty and not unseen:  # the hosts reached are as applied
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
