"""`fleetctl decommission HOST`: remove everything fleetctl owns on a host that left
servers.yaml, after showing the plan and asking; then forget it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from fleetctl import layout
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import known_hosts_option, ssh_config_option, yes_option
from fleetctl.config.errors import shown
from fleetctl.config.model import Fleet
from fleetctl.identity import credentials, natsaccess, tunnelkeys
from fleetctl.reconcile import decommission as teardown
from fleetctl.reconcile import remembered
from fleetctl.reconcile.departed import departed, listed_as, what_is_there
from fleetctl.reconcile.plan.types import Plan
from fleetctl.reconcile.remembered import RememberedHost
from fleetctl.reconcile.sessions import Options
from fleetctl.transport.base import TransportError
from fleetctl.ui.apply_view import ProgressReporter, results_table
from fleetctl.ui.plan_view import print_plan
from fleetctl.ui.terminal import err, out


@click.command()
@click.argument("name", metavar="HOST")
@yes_option
@click.option(
    "--forget",
    is_flag=True,
    help="Only drop HOST from fleetctl's memory, touching nothing (a host that is gone).",
)
@ssh_config_option
@known_hosts_option
@pass_app
def decommission(
    app: AppContext,
    name: str,
    yes: bool,
    forget: bool,
    ssh_config: Path | None,
    known_hosts: tuple[str, ...],
) -> None:
    """Remove what fleetctl put on HOST, a host that left servers.yaml, then forget it."""
    fleet = app.fleet()
    if any(h.name == name for h in fleet.hosts):
        fail(
            f"{shown(name)} is still in servers.yaml",
            "remove it there (and its workers from fleet.yaml) first; `fleetctl apply` "
            "manages the hosts servers.yaml lists",
        )
    known = remembered.load(fleet)
    entry = known.get(name)
    if entry is None:
        others = ", ".join(h.name for h in departed(fleet, known)) or "none"
        out().print(
            f"Nothing to do: fleetctl remembers no host {shown(name)} (it never applied to it "
            f"from this machine, or it was decommissioned). Hosts that left servers.yaml: "
            f"{others}.",
            markup=False,
        )
        return
    if forget:
        _forget(fleet, entry)
        return
    alias = listed_as(fleet, known, entry)
    if alias is not None:
        fail(
            f"{name} is the machine servers.yaml now calls {alias} (the same address or SSH "
            f"key): decommissioning it would remove what {alias} runs",
            f"to drop the old name only: `fleetctl decommission {name} --forget`",
        )
    if not yes and not sys.stdin.isatty():
        fail("refusing to decommission without a terminal to confirm on", "add --yes")
    options = Options(
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        command=shlex.join(["fleetctl", *sys.argv[1:]]),
    )
    try:
        session = teardown.reach(fleet, entry, options, lock=True)
    except TransportError as e:
        fail(
            f"{name}: not reached at {entry.user}@{entry.address}:{entry.port}, nothing "
            f"removed: {e.message}",
            f"if {name} is gone for good: `fleetctl decommission {name} --forget`",
        )
    try:
        if not teardown.has_manifest(session) and not session.observed.resources:
            out().print(f"Nothing of fleetctl's is on {name}.", markup=False)
            _forgotten(fleet, entry)
            return
        host_plan = teardown.teardown_plan(entry, session)
        print_plan(out(), Plan("live", fleet.revision, (host_plan,)))
        if not yes and not click.confirm(f"Decommission {name}?", default=False, err=True):
            err().print("Nothing removed.")
            sys.exit(1)
        with ProgressReporter(err(), [name]) as reporter:
            result = teardown.run(session, host_plan, reporter)
    finally:
        session.close()
    err().print(results_table([result], "Decommission"))
    if not result.ok:
        err().print(
            f"{name} is not fully decommissioned; fleetctl still remembers it. Fix the cause "
            "and run decommission again: it removes what is left.",
            markup=False,
        )
        sys.exit(1)
    out().print(f"Decommissioned {name}: nothing fleetctl put there is left.", markup=False)
    _forgotten(fleet, entry)


def _forget(fleet: Fleet, entry: RememberedHost) -> None:
    remembered.forget(fleet, entry.name)
    left = what_is_there(entry.resources) or "nothing"
    err().print(
        f"Warning: forgot {entry.name} without touching it. As last applied "
        f"({entry.applied}) it had: {left}. If it comes back, all of that runs again and "
        "fleetctl no longer warns about it.",
        markup=False,
    )
    _bus_note(fleet, entry)


def _forgotten(fleet: Fleet, entry: RememberedHost) -> None:
    """Forget the host, and its tunnel key here (a secret of a host that left)."""
    remembered.forget(fleet, entry.name)
    key = tunnelkeys.key_dir(fleet) / entry.name
    key.unlink(missing_ok=True)
    out().print(f"Forgot {entry.name}.", markup=False)
    _bus_note(fleet, entry)


def _bus_note(fleet: Fleet, entry: RememberedHost) -> None:
    """A departed worker's NATS user is revoked by the fleet's own plan, not here."""
    prefix, suffix = f"file {layout.CREDS_DIR}/", ".creds"
    creds = [
        r.removeprefix(prefix).removesuffix(suffix)
        for r in entry.resources
        if r.startswith(prefix) and r.endswith(suffix)
    ]
    gone = [w for w in creds if (worker := fleet.worker(w)) is None or not worker.enabled]
    authority = credentials.load(fleet)
    if authority is None or not gone:
        return
    records = {r.name: r for r in authority.list_users()}
    live = [w for w in gone if (r := records.get(natsaccess.worker_user(w))) and not r.revoked]
    if live:
        err().print(
            "Its workers' NATS credentials are revoked by the fleet's plan, not by "
            f"decommission: `fleetctl apply --all` revokes {', '.join(live)} (the plan "
            "shows `- credentials worker-…`).",
            markup=False,
        )
