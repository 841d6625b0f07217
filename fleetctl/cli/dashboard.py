"""`fleetctl dashboard`: the fleet's tasks, results, status and costs in a browser."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import click

from fleetctl.bus.client import BusError
from fleetctl.bus.localfleet import local_fleet
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import bus_options, no_hosts_option
from fleetctl.config.model import Fleet
from fleetctl.tasks.reach import BusOptions
from fleetctl.ui.terminal import err

DEFAULT_PORT = 8088


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Listen here; any address but loopback requires the token.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The token (first line, mode 0600) every request must carry when bound beyond "
    "loopback; without it a new token is made and printed.",
)
@no_hosts_option
@bus_options
@pass_app
def dashboard(
    app: AppContext,
    port: int,
    bind: str,
    open_browser: bool,
    token_file: Path | None,
    no_hosts: bool,
    bus: BusOptions,
) -> None:
    """Serve the dashboard for the fleet the task commands reach (the local fleet,
    --server/--creds with fleet-dashboard's creds, or an SSH forward to the broker), until
    Ctrl-C. The hosts' units are observed over SSH as `fleetctl status` does, every 30 s in
    the background (not for a local fleet, nor with --no-hosts). Loopback only by default;
    put a TLS reverse proxy in front of it to reach it from elsewhere (docs/dashboard.md)."""
    from fleetctl.dashboard.security import TokenError, is_loopback, new_token, read_token

    fleet = app.fleet()
    token = None
    if token_file is not None or not is_loopback(bind):
        try:
            token = read_token(token_file) if token_file is not None else new_token()
        except TokenError as e:
            fail(str(e))
    listening = _listen(bind, port)
    from fleetctl.dashboard.app import create_app
    from fleetctl.dashboard.source import Source
    from fleetctl.identity.natsaccess import DASHBOARD_USER
    from fleetctl.status.hosts import HostsWatch
    from fleetctl.tasks.client import Client

    local = not bus.server and local_fleet(app.fleet_path) is not None
    hosts = None if local or no_hosts else HostsWatch(fleet, bus.ssh)
    try:
        with Client.reaching(fleet, app.fleet_path, bus, DASHBOARD_USER) as client:
            source = Source(client, app.fleet_path, on_server=bool(bus.server), hosts=hosts)
            source.start()
            _serve(create_app(source, token), listening, token, open_browser)
    except BusError as e:
        fail(str(e), "the dashboard reads the bus as fleet-dashboard: `fleetctl apply` (or "
             "`fleetctl up` again) issues its creds")  # fmt: skip


def serve_beside(fleet: Fleet, fleet_path: Path, up: dict[str, Any], port: int) -> None:
    """`fleetctl up --dashboard`: the dashboard on 127.0.0.1:`port` in a thread of the running
    `up`, on its bus with its fleet-dashboard creds; when it cannot start, the fleet runs on
    and says why."""
    from fleetctl.dashboard.app import create_app
    from fleetctl.dashboard.source import Source
    from fleetctl.identity.natsaccess import DASHBOARD_USER
    from fleetctl.tasks.client import Client

    creds = (up.get("creds") or {}).get(DASHBOARD_USER)
    options = BusOptions(str(up.get("nats_url")), Path(creds) if creds else None)
    try:
        sock = _bound("127.0.0.1", port)
        opened = Client.reaching(fleet, fleet_path, options, DASHBOARD_USER)
        client = opened.__enter__()  # open for the life of `up`: the thread keeps `opened`
        source = Source(client, fleet_path, on_server=False)
        source.start()
    except (OSError, BusError) as e:
        err().print(f"dashboard: not started: {e}", markup=False)
        return

    def serve() -> None:
        try:
            _serve(create_app(source), sock, None, False)
        finally:
            opened.__exit__(None, None, None)

    threading.Thread(target=serve, name="dashboard", daemon=True).start()


def _listen(bind: str, port: int) -> socket.socket:
    """The listening socket, made here so a port in use is one clear line."""
    try:
        return _bound(bind, port)
    except OSError as e:
        fail(f"cannot listen on {bind}:{port}: {e.strerror}", "choose another --port or --bind")


def _bound(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def _serve(asgi: object, sock: socket.socket, token: str | None, open_browser: bool) -> None:
    import uvicorn

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if token is not None:
        url += f"?token={token}"
    err().print(f"dashboard: {url} (Ctrl-C stops)", markup=False, soft_wrap=True)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, (url,)).start()
    config = uvicorn.Config(
        asgi,  # type: ignore[arg-type]
        log_level="warning",
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
