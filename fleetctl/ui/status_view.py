"""`fleetctl status` for people: workers, hosts, the broker, and what needs a human.

Wide terminals (and files, pipes) get one table row per worker; narrower ones one block per
worker, so that ids are never cut and no row wraps across columns (80 columns is the width
to design for)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from fleetctl.reconcile.resources.files import human_size
from fleetctl.tasks.activity import describe

UNBOUNDED = 10_000  # columns: a table measured at this width shows its natural width
STATE_STYLES = {
    "idle": "green",
    "busy": "yellow",
    "draining": "yellow",
    "paused": "bold yellow",
    "not heartbeating": "bold red",
    "not deployed": "dim",
    "disabled": "dim",
}


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _size(n: Any) -> str:
    if isinstance(n, int) and n < 0:
        return "unlimited"
    return human_size(n) if isinstance(n, int) else "-"


def _spend(spent: Any, limit: Any, problem: Any = None) -> Text:
    if limit is None:
        return Text("-")
    if spent is None:
        what = "corrupt" if problem else "?"
        return Text(f"{what} of {float(limit):.2f}", "bold red" if problem else "")
    used = float(spent)
    shown = Text(f"{used:.2f} of {float(limit):.2f}", "bold red" if used >= limit else "")
    return shown.append(" (reset)", "bold red") if problem else shown


def _clock(at: Any) -> str:
    return time.strftime("%H:%M", time.localtime(at)) if isinstance(at, int | float) else "?"


def _state_word(w: dict[str, Any]) -> str:
    """`paused: rate limited until 14:05`, `draining until 14:30`, or the state alone."""
    if w["state"] == "paused":
        return f"paused: {w.get('pause_reason') or 'paused'} until {_clock(w['paused_until'])}"
    if w["state"] == "draining" and w.get("drain_until"):
        return f"draining until {_clock(w['drain_until'])}"
    return str(w["state"])


class Fitted:
    """The wide form when its natural width fits, the stacked one otherwise: chosen when
    printed, so `--watch` follows a terminal that is resized (as the results view stacks
    its columns in a narrow terminal)."""

    def __init__(self, wide: Table, stacked: RenderableType) -> None:
        self.wide, self.stacked = wide, stacked

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[RenderableType]:
        natural = Measurement.get(console, options.update_width(UNBOUNDED), self.wide).maximum
        fits = natural <= options.max_width
        yield self.wide if fits else self.stacked


def _state(w: dict[str, Any]) -> Text:
    """The state, then each running task, its age and what its CLI is doing."""
    state = Text(_state_word(w), STATE_STYLES.get(w["state"], ""))
    doing = {t.get("task_id"): t for t in w.get("in_flight") or ()}
    for task in w["current_tasks"]:
        state.append(f" {task.get('task_id')} {_age(task.get('running_s'))}")
        what = describe(doing.get(task.get("task_id")) or {})
        if what:
            state.append(f" ({what})", "dim")
    return state


def _heartbeat(w: dict[str, Any]) -> str:
    return _age(w["heartbeat_age_s"]) + (" ago" if w["heartbeat_age_s"] is not None else "")


def _creds(w: dict[str, Any], now: float) -> str:
    expires = w["creds_expires_at"]
    return "never expire" if expires is None else f"{_age(expires - now)} left"


def _labels(w: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(w["labels"].items())) or "-"


def _stacked_workers(rows: list[dict[str, Any]], now: float) -> RenderableType:
    """One block per worker: its whole id (never cut), then its facts on lines short enough
    for 80 columns, each wrapped under itself when even that is too wide."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for w in rows:
        facts = _state(w)
        if w["heartbeat_age_s"] is not None:
            facts.append(f", heartbeat {_heartbeat(w)}")
        facts.append(
            f"\nqueued {w['pending']}, in flight {w['ack_pending']}, redelivered "
            f"{w['redelivered']}, done {w['completed']}, failed {w['failed']}"
        )
        more = [f"version {w['version']}"] if w["version"] else []
        more += [f"up {_age(w['uptime_s'])}"] if w["uptime_s"] is not None else []
        if w["labels"]:
            more.append(_labels(w))
        if w["daily_usd"] is not None:
            more.append(f"spent today {_spend(w['spent_today_usd'], w['daily_usd']).plain}")
        more.append(f"creds {_creds(w, now)}")
        facts.append("\n" + ", ".join(more))
        grid.add_row(Text(w["worker_id"], "bold"), facts)
    return Group(Text("workers", "italic"), grid)


def _workers(rows: list[dict[str, Any]], now: float) -> Fitted:
    return Fitted(_wide_workers(rows, now), _stacked_workers(rows, now))


def _wide_workers(rows: list[dict[str, Any]], now: float) -> Table:
    table = Table(box=None, pad_edge=False, title="workers", title_justify="left")
    for name in ("WORKER", "STATE", "HEARTBEAT", "VERSION", "UPTIME"):
        table.add_column(name)
    for name in ("QUEUED", "IN FLIGHT", "REDELIVERED", "DONE", "FAILED"):
        table.add_column(name, justify="right")
    table.add_column("LABELS")
    table.add_column("SPENT TODAY", justify="right")
    table.add_column("CREDS")
    for w in rows:
        table.add_row(
            Text(w["worker_id"]),
            _state(w),
            _heartbeat(w),
            Text(str(w["version"] or "-")),
            _age(w["uptime_s"]),
            str(w["pending"]),
            str(w["ack_pending"]),
            str(w["redelivered"]),
            str(w["completed"]),
            str(w["failed"]),
            Text(_labels(w)),
            _spend(w["spent_today_usd"], w["daily_usd"], w["spend_problem"]),
            _creds(w, now),
        )
    return table


def _units(h: dict[str, Any], sep: str) -> Text:
    units = Text()
    for u in h["units"]:
        units.append(f"{u['unit']} ")
        units.append(u["state"], "green" if u["state"] == "active" else "bold red")
        units.append(sep)
    return units


def _reach(h: dict[str, Any]) -> Text:
    return Text("yes", "green") if h["reachable"] else Text(f"no: {h['error']}", "bold red")


def _hosts(rows: list[dict[str, Any]], title: str) -> Fitted:
    table = Table(box=None, pad_edge=False, title=title, title_justify="left")
    for name in ("HOST", "REACHABLE", "REPOS", "UNITS"):
        table.add_column(name)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for h in rows:
        table.add_row(Text(h["name"]), _reach(h), _repos(h.get("repos")), _units(h, "  "))
        stacked = Text("reachable: ").append_text(_reach(h))
        if h.get("repos"):
            stacked.append("\nrepositories: ").append_text(_repos(h.get("repos")))
        if h["units"]:
            units = _units(h, "\n")
            units.rstrip()
            stacked.append("\n").append_text(units)
        grid.add_row(Text(h["name"], "bold"), stacked)
    return Fitted(table, Group(Text(title, "italic"), grid))


def _repos(disk: dict[str, Any] | None) -> Text:
    """The repositories' disk use, and the free space (red below the pollers' floor)."""
    if not disk:
        return Text("-", "dim")
    text = Text(f"{_size(disk['used_bytes'])} used, ")
    free = disk["free_bytes"]
    low = isinstance(free, int) and free < disk["floor_bytes"]
    text.append(f"{_size(free)} free", "bold red" if low else "")
    return text


def _cluster(b: dict[str, Any]) -> list[Text]:
    """A cluster's brokers: up or down, routes, version, health; the meta leader."""
    servers = b.get("servers") or []
    if b.get("cluster_error"):
        return [Text(f"  brokers: not read ({b['cluster_error']})", "bold red")]
    if not servers:
        return []
    leader = b.get("meta_leader")
    lines = [Text(f"  cluster: {len(servers)} brokers, meta leader {leader or 'none'}")]
    for srv in servers:
        if not srv["up"]:
            lines.append(Text(f"    {srv['name']}: down", "bold red"))
            continue
        routes = ", ".join(srv["routes"]) or "none"
        health = "healthy" if srv["healthy"] else f"not healthy: {srv['health']}"
        lines.append(
            Text(
                f"    {srv['name']}: up, nats-server {srv['version']}, routes to {routes}, "
            ).append(health, "green" if srv["healthy"] else "bold red")
        )
    return lines


def _copies(s: dict[str, Any]) -> Text:
    """`leader broker-1, copies broker-2 current, broker-3 lags 12`."""
    text = Text(f"leader {s.get('leader') or 'none'}", "" if s.get("leader") else "bold red")
    for copy in s.get("replicas") or []:
        if copy["current"] and not copy["lag"]:
            text.append(f", {copy['name']} current")
        else:
            behind = f"lags {copy['lag']}" if copy["lag"] else "not current"
            text.append(f", {copy['name']} {behind} (seen {copy['active_s']}s ago)", "yellow")
    return text


def _broker(b: dict[str, Any]) -> RenderableType:
    if not b["reachable"]:
        return Text(f"broker: not reachable ({b['error']})", "bold red")
    js = b["jetstream"]
    lines = [
        Text(f"broker: nats-server {b['server_version']}", "bold"),
        Text(
            f"  JetStream: storage {_size(js.get('storage_bytes'))} of "
            f"{_size(js.get('max_storage_bytes'))}, memory {_size(js.get('memory_bytes'))} of "
            f"{_size(js.get('max_memory_bytes'))}"
        ),
    ]
    lines += _cluster(b)
    for s in b["streams"]:
        if "error" in s:
            lines.append(Text(f"  {s['name']}: did not answer ({s['error']})", "bold red"))
            continue
        line = Text(
            f"  {s['name']}: {s['messages']} messages, "
            f"{_size(s['bytes'])} of {_size(s['max_bytes'])}"
        )
        if "leader" in s:
            line.append("  ").append(_copies(s))
        lines.append(line)
    if b["fleet_daily_usd"] is not None:
        lines.append(
            Text("  fleet spend today: ").append(
                _spend(b["fleet_spent_today_usd"], b["fleet_daily_usd"], b["fleet_spend_problem"])
            )
        )
    new = b["new_dead_letters"]
    lines.append(
        Text(
            f"  dead letters: {b['dead_letters']} ({new} new since the last look)",
            "bold red" if new else "",
        )
    )
    return Group(*lines)


@dataclass
class Watching:
    """`--watch`: how often the bus and the hosts are looked at, and when the hosts were."""

    bus_every: float
    hosts_every: float | None  # None: no hosts to look at (a local fleet, --no-hosts)
    hosts_at: float | None = None  # time.time() of the last look at the hosts


def _hosts_title(body: dict[str, Any], watching: Watching | None) -> str:
    if watching is None or watching.hosts_every is None:
        return "hosts"
    if watching.hosts_at is None:
        return f"hosts (looked at every {_age(watching.hosts_every)}; the first look runs)"
    ago = _age(max(0.0, float(body["at"]) - watching.hosts_at))
    return f"hosts (looked at {ago} ago, every {_age(watching.hosts_every)})"


def _problems(problems: list[str]) -> RenderableType:
    """Each problem indented, and wrapped under itself rather than at the margin."""
    grid = Table.grid(padding=(0, 0))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for p in problems:
        grid.add_row("  ", Text(p))
    return grid


def render(body: dict[str, Any], watching: Watching | None = None) -> RenderableType:
    now = float(body["at"])
    parts: list[RenderableType] = []
    if watching is not None:
        hosts = (
            ""
            if watching.hosts_every is None
            else f", the hosts every {_age(watching.hosts_every)}"
        )
        parts += [
            Text(
                f"fleetctl status --watch: the bus every {_age(watching.bus_every)}{hosts}; "
                "Ctrl-C stops",
                "dim",
            ),
            Text(""),
        ]
    parts += [_workers(body["workers"], now), Text("")]
    if body["local"]:
        parts.append(Text("hosts: the local fleet (fleetctl up): no SSH", "dim"))
    elif not body["hosts_observed"]:
        parts.append(Text("hosts: not observed (--no-hosts)", "dim"))
    else:
        parts.append(_hosts(body["hosts"], _hosts_title(body, watching)))
    parts += [Text(""), _broker(body["broker"]), Text("")]
    if body["problems"]:
        parts.append(Text("needs a human:", "bold red"))
        parts.append(_problems(body["problems"]))
    else:
        parts.append(Text("no problems", "green"))
    return Group(*parts)
