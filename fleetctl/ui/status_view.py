"""`fleetctl status` for people: workers, hosts, the broker, and what needs a human."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleetctl.reconcile.resources.files import human_size
from fleetctl.tasks.activity import describe

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


def _state(w: dict[str, Any]) -> str:
    """`paused: rate limited until 14:05`, `draining until 14:30`, or the state alone."""
    if w["state"] == "paused":
        return f"paused: {w.get('pause_reason') or 'paused'} until {_clock(w['paused_until'])}"
    if w["state"] == "draining" and w.get("drain_until"):
        return f"draining until {_clock(w['drain_until'])}"
    return str(w["state"])


def _workers(rows: list[dict[str, Any]], now: float) -> Table:
    table = Table(box=None, pad_edge=False, title="workers", title_justify="left")
    for name in ("WORKER", "STATE", "HEARTBEAT", "VERSION", "UPTIME"):
        table.add_column(name)
    for name in ("QUEUED", "IN FLIGHT", "REDELIVERED", "DONE", "FAILED"):
        table.add_column(name, justify="right")
    table.add_column("LABELS")
    table.add_column("SPENT TODAY", justify="right")
    table.add_column("CREDS")
    for w in rows:
        state = Text(_state(w), STATE_STYLES.get(w["state"], ""))
        doing = {t.get("task_id"): t for t in w.get("in_flight") or ()}
        for task in w["current_tasks"]:
            state.append(f" {task.get('task_id')} {_age(task.get('running_s'))}")
            what = describe(doing.get(task.get("task_id")) or {})
            if what:
                state.append(f" ({what})", "dim")
        expires = w["creds_expires_at"]
        table.add_row(
            Text(w["worker_id"]),
            state,
            _age(w["heartbeat_age_s"]) + (" ago" if w["heartbeat_age_s"] is not None else ""),
            Text(str(w["version"] or "-")),
            _age(w["uptime_s"]),
            str(w["pending"]),
            str(w["ack_pending"]),
            str(w["redelivered"]),
            str(w["completed"]),
            str(w["failed"]),
            Text(",".join(f"{k}={v}" for k, v in sorted(w["labels"].items())) or "-"),
            _spend(w["spent_today_usd"], w["daily_usd"], w["spend_problem"]),
            "never expire" if expires is None else f"{_age(expires - now)} left",
        )
    return table


def _hosts(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, title="hosts", title_justify="left")
    for name in ("HOST", "REACHABLE", "REPOS", "UNITS"):
        table.add_column(name)
    for h in rows:
        units = Text()
        for u in h["units"]:
            units.append(f"{u['unit']} ")
            units.append(u["state"], "green" if u["state"] == "active" else "bold red")
            units.append("  ")
        reach = Text("yes", "green") if h["reachable"] else Text(f"no: {h['error']}", "bold red")
        table.add_row(Text(h["name"]), reach, _repos(h.get("repos")), units)
    return table


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


def render(body: dict[str, Any]) -> RenderableType:
    now = float(body["at"])
    parts: list[RenderableType] = [_workers(body["workers"], now), Text("")]
    if body["local"]:
        parts.append(Text("hosts: the local fleet (fleetctl up): no SSH", "dim"))
    elif not body["hosts_observed"]:
        parts.append(Text("hosts: not observed (--no-hosts)", "dim"))
    else:
        parts.append(_hosts(body["hosts"]))
    parts += [Text(""), _broker(body["broker"]), Text("")]
    if body["problems"]:
        parts.append(Text("needs a human:", "bold red"))
        parts += [Text(f"  {p}") for p in body["problems"]]
    else:
        parts.append(Text("no problems", "green"))
    return Group(*parts)
