"""A worker host's resources: the poller package, the workers' LLM CLIs, and per worker
its user, home, unit and credentials."""

from __future__ import annotations

import dataclasses

from fleetctl import layout
from fleetctl.config.model import Fleet, Worker, repo_user
from fleetctl.reconcile import backend_units as backends
from fleetctl.reconcile.desired.context import Context, Parts
from fleetctl.reconcile.desired.poller_env import poller_unit_environment
from fleetctl.reconcile.desired.repos import add_repos_file
from fleetctl.reconcile.resources.dirs import DirSpec
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.reconcile.resources.packages import POLLER_PACKAGE, PackageSpec, llm_cli_package
from fleetctl.reconcile.resources.units import UnitSpec
from fleetctl.reconcile.resources.users import UserSpec
from fleetctl.render.engine import render_unit

# After its drain_timeout a stopping poller stops what still runs, hands it back, says it
# stopped and exits: systemd waits this much longer before it kills what is left.
POLLER_STOP_MARGIN = 30


def poller_stop_timeout(worker: Worker) -> int:
    """The unit's TimeoutStopSec: the worker's drain, then the poller's own way out."""
    return worker.drain_timeout + POLLER_STOP_MARGIN


def add_packages(ctx: Context, workers: list[Worker], parts: Parts) -> None:
    """The poller, and each LLM CLI the workers run (a CLI only one worker runs is that
    worker's, so `--worker` plans it)."""
    if ctx.versions.poller:
        parts.packages.append(PackageSpec(POLLER_PACKAGE, ctx.versions.poller))
    for cli in dict.fromkeys(w.cli for w in workers if w.cli is not None):
        runners = [w.id for w in workers if w.cli == cli]
        owner = runners[0] if len(runners) == 1 else None
        parts.packages.append(dataclasses.replace(llm_cli_package(cli), worker=owner))


def add_worker(ctx: Context, worker: Worker, tunnel_units: tuple[str, ...], parts: Parts) -> None:
    """A worker's user, home, unit (and what restarts it), and its creds when there are any."""
    user = worker.service_user
    parts.users.append(UserSpec(user, worker.work_base, worker.id))
    parts.dirs.append(DirSpec(worker.work_base, user, user, 0o750, worker.id))
    path = layout.unit_path(worker.unit)
    unit = render_poller_unit(ctx.fleet, worker, tunnel_units)
    parts.files.append(FileSpec(path, unit.encode(), worker=worker.id))
    restart_on = [path, layout.creds_path(worker.id), f"package {POLLER_PACKAGE}"]
    if worker.env_file:
        restart_on.append(worker.env_file)
    if worker.cli is not None:
        restart_on.append(llm_cli_package(worker.cli).key)
    if worker.repos:
        restart_on.append(layout.repos_file(worker.id))
        add_repos_file(ctx.fleet, worker, parts)
    parts.units.append(
        UnitSpec(
            worker.unit,
            path,
            worker=worker.id,
            restart_on=tuple(restart_on),
            stop_timeout=poller_stop_timeout(worker),
        )
    )
    creds = ctx.inputs.creds.get(worker.id)
    if creds is not None:
        creds_path = layout.creds_path(worker.id)
        parts.files.append(FileSpec(creds_path, creds, user, user, 0o600, True, worker.id))


def render_poller_unit(fleet: Fleet, worker: Worker, tunnel_units: tuple[str, ...]) -> str:
    """With one broker the poller needs its one tunnel (`Requires=`); on a cluster it only
    wants them (`Wants=`): one tunnel down is a reconnect through another, and a tunnel's
    restart must not stop the poller."""
    return render_unit(
        backends.unit_template(worker),
        worker=worker,
        common_env=poller_unit_environment(fleet, worker),
        tunnel_units=tunnel_units,
        tunnels_required=not fleet.is_cluster,
        poller_bin=layout.POLLER_BIN,
        stop_timeout=poller_stop_timeout(worker),
        repo_groups=[repo_user(name) for name in worker.repos],
        repo_mirrors=[layout.repo_mirror(name) for name in worker.repos],
    )
