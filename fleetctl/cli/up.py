"""`fleetctl up` / `fleetctl down`: the whole fleet on this machine, no root, no SSH."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from fleetctl.bus.localfleet import default_state_dir
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import json_option
from fleetctl.config.model import Fleet
from fleetctl.local import attach, control
from fleetctl.local.console import Console
from fleetctl.local.state import StateDir, read_json, running_pid
from fleetctl.local.supervisor import READY_TIMEOUT, Options, Supervisor
from fleetctl.ui.terminal import err, out

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the local fleet keeps its store, bus data and logs [default: .fleetctl/ "
    "beside fleet.yaml].",
)


def _state(app: AppContext, state_dir: Path | None) -> StateDir:
    return StateDir((state_dir or default_state_dir(app.fleet_path)).resolve())


def _say(message: str) -> None:
    err().print(message, markup=False)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _say_draining(rows: list[dict[str, Any]]) -> None:
    """`draining w1: 2 tasks, up to 30m`: what a stop or reload waits for (an idle worker
    waits for nothing, and is not named)."""
    for row in rows:
        tasks = row.get("tasks")
        if tasks == 0:
            continue
        what = "" if not isinstance(tasks, int) else f"{tasks} task{'s' * (tasks != 1)}, "
        until = row.get("until")
        left = _duration(until - time.time()) if isinstance(until, int | float) else "?"
        _say(f"draining {row.get('worker_id')}: {what}up to {left}")


def _relative(path: str | Path) -> str:
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _send_hint(worker: str, up: dict[str, Any], default_place: bool) -> str:
    """The task commands find a local fleet in the default state dir by themselves;
    elsewhere they need its URL and creds."""
    where = ""
    if not default_place:
        creds = _relative((up.get("creds") or {}).get("fleet-publisher", ""))
        where = f" --server {up.get('nats_url')} --creds {creds}"
    return f'fleetctl task send{where} --to {worker} --wait "Say hello"'


def _dashboard_hint(up: dict[str, Any], default_place: bool) -> str:
    """`fleetctl dashboard`, which finds a local fleet in the default state dir by itself."""
    if default_place:
        return "fleetctl dashboard"
    creds = _relative((up.get("creds") or {}).get("fleet-dashboard", ""))
    return f"fleetctl dashboard --server {up.get('nats_url')} --creds {creds}"


def _running(status: dict[str, Any], up: dict[str, Any]) -> list[str]:
    """The started workers that sent a heartbeat (one still restarting is not running)."""
    failing = {e["worker_id"] for e in (status.get("outcome") or {}).get("not_ready", [])}
    return [w for w in up.get("workers") or [] if w not in failing]


def report(
    status: dict[str, Any], state: StateDir, seconds: float | None, foreground: bool = False
) -> None:
    """Where everything is and how to use it, once the fleet is ready."""
    outcome = status.get("outcome") or {}
    up = read_json(state.up_json) or {}
    started = _running(status, up)
    for entry in outcome.get("not_started", []):
        _say(f"{entry['worker_id']}: not started: {entry['reason']}")
    for entry in outcome.get("not_ready", []):
        _say(f"{entry['worker_id']}: started but not ready: {entry['reason']}")
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    console = out()
    console.print(
        f"Local fleet ready{took}: {len(started)} worker(s) running "
        f"({escape(', '.join(started)) or 'none'}).",
        highlight=False,
    )
    creds = up.get("creds") or {}
    rows = [
        ("bus", f"{up.get('nats_url')}  (creds {_relative(creds.get('fleet-publisher', ''))})"),
        *_broker_rows(status),
        ("logs", f"{_relative(state.logs)}/<worker>.log"),
        ("state", f"{_relative(state.root)}/up.json"),
    ]
    default_place = state.root == default_state_dir(Path(str(up.get("fleet", ""))))
    if started:
        rows.append(("send", _send_hint(started[0], up, default_place)))
    if (up.get("creds") or {}).get("fleet-dashboard"):
        rows.append(("web", _dashboard_hint(up, default_place)))
    down = "fleetctl down" + ("" if default_place else f" --state-dir {_relative(state.root)}")
    rows.append(("stop", f"Ctrl-C, or {down}" if foreground else down))
    for name, value in rows:
        console.print(f"  {name:<6} {escape(value)}", highlight=False)


def _broker_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    """A local cluster's brokers, with the pid to kill one by (it is started again)."""
    brokers = status.get("brokers") or []
    if len(brokers) < 2:
        return []
    return [
        ("broker", f"{b.get('name')} on 127.0.0.1:{b.get('port')} (pid {b.get('pid')})")
        for b in brokers
    ]


def _json_summary(status: dict[str, Any], state: StateDir) -> str:
    outcome = status.get("outcome") or {}
    up = read_json(state.up_json) or {}
    return json.dumps(
        {
            "started": _running(status, up),
            "not_started": outcome.get("not_started", []) + outcome.get("not_ready", []),
            "state_dir": str(state.root),
            "nats_url": up.get("nats_url"),
        },
        indent=2,
    )


def _check_only(fleet: Fleet, only: tuple[str, ...]) -> None:
    known = {w.id for w in fleet.workers}
    unknown = [w for w in only if w not in known]
    if unknown:
        fail(f"unknown worker(s) for --only: {', '.join(unknown)}", "see fleet.yaml's workers")


def _install_clis(fleet: Fleet, only: tuple[str, ...]) -> None:
    """The pinned CLIs of the workers that would start, from their locks into this machine's
    cache (what `apply` uploads to hosts); a CLI already there is checked, not fetched again."""
    from fleetctl.artifacts import clicache
    from fleetctl.artifacts.errors import ArtifactError

    wanted = {
        (w.cli.package, w.cli.version): w.cli
        for w in fleet.workers
        if w.enabled and w.cli is not None and (not only or w.id in only)
    }
    for cli in wanted.values():
        try:
            if clicache.installed(cli) is None:
                _say(f"fetching {cli.package}@{cli.version} with npm (npm ci, from its lock)")
                clicache.install(cli)
        except ArtifactError as e:
            fail(str(e))


def _reload(state: StateDir, pid: int, as_json: bool) -> None:
    _say(f"The local fleet is already running (pid {pid}); applying fleet.yaml to it.")
    waits = float((read_json(state.supervisor_json) or {}).get("ready_timeout", READY_TIMEOUT))
    try:
        status = control.reload(state, waits + 30, on_draining=_say_draining)
    except control.ControlError as e:
        fail(str(e))
    if status.get("error"):
        fail(str(status["error"]), "fix fleet.yaml (`fleetctl validate`) and run `fleetctl up`")
    outcome = status.get("outcome") or {}
    if as_json:
        click.echo(_json_summary(status, state))
        return
    changed = False
    for verb in ("started", "restarted", "stopped"):
        if outcome.get(verb):
            changed = True
            _say(f"{verb}: {', '.join(outcome[verb])}")
    if not changed:
        _say("No worker changed.")
    report(status, state, None)


def _attach(state: StateDir, workers: list[str]) -> None:
    """Follow the running fleet's logs, as the foreground `up` prints them, until Ctrl-C
    (the fleet keeps running) or until it stops."""
    _say("Following every worker's log; Ctrl-C stops following, not the fleet.")
    try:
        attach.follow(state, workers, Console(), lambda: running_pid(state) is not None)
    except KeyboardInterrupt:
        _say("Stopped following: the local fleet keeps running (fleetctl down stops it).")
        return
    _say("The local fleet stopped.")


@click.command()
@click.option("--detach", "-d", is_flag=True, help="Return once ready; `fleetctl down` stops it.")
@click.option("--only", multiple=True, metavar="ID", help="Start only this worker (repeatable).")
@click.option("--reload", "reload_only", is_flag=True, help="Apply fleet.yaml to the running one.")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=1),
    default=READY_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for each started worker's first heartbeat.",
)
@click.option(
    "--install-clis",
    is_flag=True,
    help="First fetch the pinned LLM CLIs the workers need into the CLI cache (npm).",
)
@click.option(
    "--brokers",
    type=click.Choice(["1", "3", "5"]),
    default="1",
    show_default=True,
    help="Local nats-servers: 3 or 5 make a NATS cluster on loopback (routes over TLS, "
    "streams kept on 3), so a broker can be killed to see the fleet go on.",
)
@click.option(
    "--dashboard",
    "with_dashboard",
    is_flag=True,
    help="Also serve `fleetctl dashboard` on 127.0.0.1 while the fleet runs here.",
)
@click.option(
    "--dashboard-port",
    type=click.IntRange(1, 65535),
    default=8088,
    show_default=True,
    help="With --dashboard: its port.",
)
@state_dir_option
@json_option
@pass_app
def up(
    app: AppContext,
    detach: bool,
    only: tuple[str, ...],
    reload_only: bool,
    wait_timeout: float,
    install_clis: bool,
    brokers: str,
    with_dashboard: bool,
    dashboard_port: int,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """Run every enabled worker of the fleet on this machine, with a local nats-server (or a
    local cluster of them: --brokers 3)."""
    fleet = app.fleet(local=True)
    _check_only(fleet, only)
    if install_clis:
        _install_clis(fleet, only)
    if as_json and not detach and not reload_only:
        fail("--json needs --detach", "fleetctl up --detach --json")
    if with_dashboard and (detach or reload_only):
        fail(
            "--dashboard serves it while `fleetctl up` runs in the foreground",
            "with --detach, run `fleetctl dashboard` beside it",
        )
    state = _state(app, state_dir)
    pid = running_pid(state)
    if pid is not None:
        if only or brokers != "1":
            _say(
                "--only and --brokers apply when the local fleet starts: ignored "
                "(fleetctl down first)"
            )
        _reload(state, pid, as_json)
        # On a terminal, as compose's `up` does; a script's `fleetctl up` returns, as before.
        if not (detach or reload_only or as_json) and sys.stdout.isatty():
            _attach(state, [w.id for w in fleet.workers if w.enabled])
        return
    if reload_only:
        fail(f"no local fleet is running in {_relative(state.root)}", "start one: fleetctl up")
    began = time.monotonic()
    if detach:
        servers = app.servers(local=True)
        argv = control.supervisor_argv(
            app.fleet_path, servers, state, only, wait_timeout, int(brokers)
        )
        try:
            status = control.start_detached(argv, state, wait_timeout + 60)
        except control.ControlError as e:
            fail(str(e))
        if as_json:
            click.echo(_json_summary(status, state))
        else:
            report(status, state, time.monotonic() - began)
        return
    servers = app.servers(local=True)
    options = Options(
        app.fleet_path,
        servers,
        state,
        only,
        ready_timeout=wait_timeout,
        brokers=int(brokers),
    )

    def ready(status: dict[str, Any]) -> None:
        report(status, state, time.monotonic() - began, foreground=True)
        if with_dashboard:
            from fleetctl.cli.dashboard import serve_beside

            up_record = read_json(state.up_json) or {}
            serve_beside(app.fleet(), app.fleet_path, up_record, dashboard_port)

    supervisor = Supervisor(options, on_ready=ready)
    code = supervisor.run()
    if code:
        status = read_json(state.supervisor_json) or {}
        fail(str(status.get("error") or "the local fleet could not start"))
    _say("Local fleet stopped.")


@click.command()
@state_dir_option
@pass_app
def down(app: AppContext, state_dir: Path | None) -> None:
    """Stop the local fleet: each worker's running tasks finish within its drain_timeout
    (then they are handed back), then everything stops. Its bus data stays for the next
    `fleetctl up`."""
    if state_dir is None and not app.fleet_path.exists():
        fail(f"{app.fleet_path}: no such file", "pass -f FLEET, or --state-dir DIR")
    state = _state(app, state_dir)
    clustered = len((read_json(state.supervisor_json) or {}).get("brokers") or []) > 1
    try:
        pid = control.stop(state, on_draining=_say_draining)
    except control.ControlError as e:
        fail(str(e))
    if pid is None:
        _say(f"No local fleet is running in {_relative(state.root)}.")
        return
    kept = _relative(state.nats if clustered else state.jetstream)
    _say(f"Local fleet stopped (supervisor pid {pid}); its bus data is kept in {kept}.")
