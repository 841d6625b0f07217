"""Options shared by several commands, each defined once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

diff_option = click.option(
    "--diff", "show_diff", is_flag=True, help="Show file contents and changes."
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (versioned schema) instead of text."
)
worker_option = click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="ID",
    help="Only this worker and what it needs on its host (repeatable).",
)
one_worker_option = click.option(
    "--worker", "worker_id", required=True, metavar="ID", help="The worker's id."
)
server_option = click.option(
    "--server", metavar="URL", help="Also push the revocation to this running broker now."
)
host_option = click.option(
    "--host", "hosts", multiple=True, metavar="NAME", help="Only this host (repeatable)."
)
ssh_config_option = click.option(
    "--ssh-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="FLEETCTL_SSH_CONFIG",
    help="ssh_config to use instead of ~/.ssh/config.",
)
known_hosts_option = click.option(
    "--known-hosts",
    multiple=True,
    type=click.Path(dir_okay=False),
    envvar="FLEETCTL_KNOWN_HOSTS",
    help="known_hosts file(s) to check host keys against (default: as ssh would).",
)
parallel_option = click.option(
    "--parallel",
    type=click.IntRange(1, 256),
    default=10,
    show_default=True,
    help="Hosts worked on at once.",
)
settle_option = click.option(
    "--settle",
    type=click.FloatRange(0, 600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a started unit must stay up (then its poller must answer a ping from a "
    "process up that long).",
)
drain_timeout_option = click.option(
    "--drain-timeout",
    metavar="DURATION",
    help="Hand a stopping poller's tasks back after this long (30s, 5m) instead of "
    "letting them finish for the worker's drain_timeout.",
)
no_drain_option = click.option(
    "--no-drain",
    is_flag=True,
    help="Restart pollers at once: their running tasks go back to the queue for another run.",
)
force_option = click.option(
    "--force", is_flag=True, help="Replace the file it writes if it is already there."
)
yes_option = click.option(
    "--yes", "-y", is_flag=True, help="Do not ask before changing hosts (for scripts and CI)."
)

server_option = click.option(
    "--server",
    metavar="URL",
    envvar="FLEETCTL_NATS_URL",
    help="The bus at this URL (nats://HOST:PORT) instead of the local fleet or SSH.",
)
creds_option = click.option(
    "--creds",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FLEETCTL_NATS_CREDS",
    help="A .creds file for --server (fleet-publisher's).",
)


def bus_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """How a task command reaches the bus (fleetctl/tasks/reach.py): --server/--creds, else a
    running local fleet, else SSH to the broker (--ssh-config/--known-hosts). The command
    gets them as one `bus: BusOptions` argument."""

    @functools.wraps(command)
    def with_bus(
        *args: Any,
        server: str | None,
        creds: Path | None,
        ssh_config: Path | None,
        known_hosts: tuple[str, ...],
        **kwargs: Any,
    ) -> Any:
        from fleetctl.reconcile.sessions import Options
        from fleetctl.tasks.reach import BusOptions

        ssh = Options(ssh_config=ssh_config, known_hosts=known_hosts)
        return command(*args, bus=BusOptions(server, creds, ssh), **kwargs)

    wrapped: Callable[..., Any] = with_bus
    for option in (known_hosts_option, ssh_config_option, creds_option, server_option):
        wrapped = option(wrapped)
    return wrapped


to_option = click.option(
    "--to", "to", multiple=True, metavar="ID", help="Send to this worker (repeatable: fan-out)."
)


def since_option(default: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--since DURATION`; unset where `default` is None: everything stored."""
    return click.option(
        "--since",
        default=default,
        show_default=default is not None,
        metavar="DURATION",
        help="Only this last stretch of time (30m, 2h, 7d).",
    )


watch_option = click.option(
    "--watch", is_flag=True, help="Keep showing it, updated as news arrives (Ctrl-C stops)."
)
no_hosts_option = click.option(
    "--no-hosts",
    "no_hosts",
    is_flag=True,
    help="Only the bus: do not observe the hosts' units over SSH (a coordinator without SSH "
    "access).",
)
