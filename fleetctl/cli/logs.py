"""`fleetctl logs WORKER`: the worker's poller log, readable, from its host or the local fleet."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from fleetctl.bus.localfleet import default_state_dir, local_fleet
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import known_hosts_option, since_option, ssh_config_option
from fleetctl.cli.params import duration
from fleetctl.status import logview


@click.command()
@click.argument("worker_id", metavar="WORKER")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0, max=1_000_000),
    default=50,
    show_default=True,
    help="How many of the last lines to print.",
)
@since_option(None)
@ssh_config_option
@known_hosts_option
@pass_app
def logs(
    app: AppContext,
    worker_id: str,
    follow: bool,
    lines: int,
    since: str | None,
    ssh_config: Path | None,
    known_hosts: tuple[str, ...],
) -> None:
    """A worker's poller log: `journalctl -u <worker>-poller` on its host over SSH, or the
    local fleet's log file (`fleetctl up`). The poller's JSON lines print as
    `time level event key=value ...`."""
    fleet = app.fleet(local=True)
    worker = fleet.worker(worker_id)
    if worker is None:
        known = ", ".join(w.id for w in fleet.workers)
        fail(f"no worker {worker_id!r} in the fleet", f"one of: {known}")
    seconds = duration(since, "--since")
    start = time.time() - seconds if seconds is not None else None
    try:
        if local_fleet(app.fleet_path) is not None:
            _local(app.fleet_path, worker.id, lines, follow, start)
        else:
            _remote(fleet, worker.host, worker.unit, lines, follow, start, ssh_config, known_hosts)
    except KeyboardInterrupt:
        return


def _emit(text: str) -> None:
    click.echo(text)
    sys.stdout.flush()


def _local(fleet_path: Path, worker_id: str, lines: int, follow: bool, since: float | None) -> None:
    path = default_state_dir(fleet_path) / "logs" / f"{worker_id}.log"
    if not path.is_file():
        fail(
            f"the local fleet has no log for {worker_id} (not started here?)", f"see {path.parent}"
        )
    for text in logview.printable(logview.tail_file(path, lines, follow), since):
        _emit(text)


def _remote(
    fleet: object,
    host_name: str,
    unit: str,
    lines: int,
    follow: bool,
    since: float | None,
    ssh_config: Path | None,
    known_hosts: tuple[str, ...],
) -> None:
    from fleetctl.config.model import Fleet
    from fleetctl.hostside.agent import journal_argv
    from fleetctl.reconcile import sessions
    from fleetctl.transport.base import TransportError

    assert isinstance(fleet, Fleet)
    host = fleet.host(host_name)
    options = sessions.Options(ssh_config=ssh_config, known_hosts=known_hosts)
    try:
        transport = sessions.connect(host, options)
    except TransportError as e:
        fail(f"cannot reach {host.name} over SSH: {e.message}")
    argv = journal_argv(unit, lines, follow, since)  # `since` is filtered here too (by `ts`)

    def on_line(raw: bytes) -> None:
        line = raw.decode(errors="replace")
        if logview.since_ok(line, since):
            _emit(logview.readable(line))

    try:
        done = transport.run(argv, on_line=on_line)
    except TransportError as e:
        fail(f"{host.name}: {e.message}")
    finally:
        transport.close()
    if done.code != 0:
        why = logview.readable(done.stderr.decode(errors="replace").strip()[-500:])
        fail(f"{host.name}: journalctl exited {done.code}: {why}")
