"""Rules that span entries or files: duplicates, references between files, roles.

They run on the raw data, skipping any value that already failed its own check, so one
mistake is reported once and every independent mistake is still reported.
"""

from __future__ import annotations

from typing import Any

from fleetctl.config import natslimits, paths, repochecks
from fleetctl.config.errors import BadValue, Mark, Problem
from fleetctl.config.llms import BUILTIN_LLMS
from fleetctl.config.pydantic_errors import did_you_mean
from fleetctl.config.schema import NatsSettings
from fleetctl.config.values import parse_duration
from fleetctl.config.yamlsource import PathKey, SourceMap, dotted
from poller.backends import BACKENDS

BROKER, WORKER = "broker-host", "worker-host"
# Worker keys only one backend reads (from the registry), so setting one on a worker of
# another backend is a mistake, not a no-op; `defaults:` may set them for all.
OWNED_FIELDS = {
    s.field: b.name
    for b in BACKENDS.values()
    for s in b.settings
    if s.field not in ("bin", "model")
}
OWNER_LLMS = {b.name: [llm.name for llm in b.llms] for b in BACKENDS.values()}


class _Checker:
    def __init__(self, bad_fields: set[str]) -> None:
        self.bad = bad_fields
        self.problems: list[Problem] = []
        self.brokers: int | None = None  # broker hosts, once servers.yaml could be counted

    def ok(self, path: PathKey) -> bool:
        """A value that is present and passed its own check (and so did its parents)."""
        name = dotted(path)
        return not any(
            name == b or name.startswith(b + ".") or name.startswith(b + "[") for b in self.bad
        )

    def clean(self, path: PathKey) -> bool:
        """ok(), and nothing inside the value failed its own check either."""
        name = dotted(path)
        return self.ok(path) and not any(
            b.startswith(name + ".") or b.startswith(name + "[") for b in self.bad
        )

    def add(self, mark: Mark, path: PathKey, what: str, fix: str = "") -> None:
        self.problems.append(Problem(mark, dotted(path), what, fix))


def _entries(data: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [(i, e) for i, e in enumerate(items) if isinstance(e, dict)]


def _text(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) else None


def check(
    servers: Any, servers_map: SourceMap, fleet: Any, fleet_map: SourceMap, bad: set[str]
) -> list[Problem]:
    c = _Checker(bad)
    hosts = _check_servers(c, servers, servers_map)
    if fleet is not None:
        _check_workers(c, fleet, fleet_map, hosts)
        _check_nats(c, fleet, fleet_map)
        c.problems += paths.problems(fleet, fleet_map, c.ok)
        c.problems += repochecks.problems(fleet, fleet_map, c.ok)
    return c.problems


def _check_servers(c: _Checker, data: Any, smap: SourceMap) -> dict[str, set[str] | None] | None:
    """Host name -> roles (None where the roles failed their own check), or None when
    servers.yaml is too broken to cross-check against."""
    if data is None or not c.ok(("servers",)):
        return None
    hosts: dict[str, set[str] | None] = {}
    first_line: dict[str, int] = {}
    brokers: list[tuple[str, PathKey]] = []
    complete = True
    for i, entry in _entries(data, "servers"):
        path: PathKey = ("servers", i, "name")
        name = _text(entry, "name")
        if name is None or not c.ok(path):
            complete = False
            continue
        if name in hosts:
            c.add(
                smap.value(path),
                path,
                f"duplicate host name {name!r} (first at line {first_line[name]})",
                "give each host a unique name",
            )
            continue
        first_line[name] = smap.value(path).line
        roles_path: PathKey = ("servers", i, "roles")
        roles = entry.get("roles")
        if not c.clean(roles_path) or not isinstance(roles, list):
            complete = False
            hosts[name] = None
            continue
        role_set = {r for r in roles if isinstance(r, str)}
        hosts[name] = role_set
        if BROKER in role_set:
            brokers.append((name, roles_path))
    if complete and hosts and not brokers:
        c.add(
            smap.key(("servers",)),
            ("servers",),
            "no host has the broker-host role",
            "add broker-host to the roles of the host that runs nats-server",
        )
    if complete:
        c.brokers = len(brokers)
    _check_broker_count(c, smap, brokers)
    return hosts if hosts or complete else None


# Broker counts that make a NATS cluster fleetctl runs: a quorum is a majority of them.
CLUSTER_SIZES = (3, 5)


def _check_broker_count(c: _Checker, smap: SourceMap, brokers: list[tuple[str, PathKey]]) -> None:
    """One broker, or a cluster of three or five: JetStream keeps a stream writable while a
    majority of its servers is up, so two brokers stop with either one down, and an even
    count tolerates no more losses than the odd count below it."""
    count = len(brokers)
    if count <= 1 or count in CLUSTER_SIZES:
        return
    name, path = brokers[-1]
    names = ", ".join(repr(n) for n, _ in brokers)
    if count == 2:
        what = (
            f"{name!r} is a second broker-host ({names}): two brokers have no quorum, "
            "JetStream needs a majority (2 of 2) up, so either one down stops the bus"
        )
        fix = "use three broker hosts (or five) for a cluster, or keep broker-host on one host"
    elif count == 4:
        what = f"four broker-hosts ({names}) tolerate one down, as three do (a majority is 3 of 4)"
        fix = "use three or five broker hosts"
    else:
        what = f"{count} broker-hosts ({names}): a cluster has three or five"
        fix = "use three or five broker hosts"
    c.add(smap.value(path), path, what, fix)


def _check_workers(
    c: _Checker, data: Any, fmap: SourceMap, hosts: dict[str, set[str] | None] | None
) -> None:
    llms: dict[str, tuple[str | None, bool]] = {
        n: (s.backend, s.requires_env_file) for n, s in BUILTIN_LLMS.items()
    }
    custom = data.get("llms") if isinstance(data, dict) else None
    if isinstance(custom, dict):
        for name, spec in custom.items():
            if isinstance(spec, dict) and c.ok(("llms", name)):
                llms[name] = (spec.get("backend"), bool(spec.get("requires_env_file", False)))
                _check_llm_version(c, fmap, ("llms", name), spec)
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    seen: dict[str, Mark] = {}
    for i, entry in _entries(data, "workers"):
        base: PathKey = ("workers", i)
        wid = _text(entry, "worker_id")
        if wid is not None and c.ok((*base, "worker_id")):
            mark = fmap.value((*base, "worker_id"))
            if wid in seen:
                c.add(
                    mark,
                    (*base, "worker_id"),
                    f"duplicate worker_id {wid!r} (first at line {seen[wid].line})",
                    "give each worker a unique id",
                )
            else:
                seen[wid] = mark
        host = _text(entry, "host")
        if host is not None and hosts is not None and c.ok((*base, "host")):
            _check_placement(c, fmap, (*base, "host"), host, hosts)
        llm = _text(entry, "llm")
        if llm is not None and c.ok((*base, "llm")):
            _check_llm(c, fmap, base, entry, defaults, llm, llms)


def _check_llm_version(c: _Checker, fmap: SourceMap, base: PathKey, spec: dict[str, Any]) -> None:
    """`version:` pins the CLI apply installs: meaningless beside a host-provided `bin:`, or
    for a backend that has no CLI of its own."""
    if spec.get("version") is None or not c.ok((*base, "version")):
        return
    backend = spec.get("backend")
    where = fmap.key((*base, "version"))
    if spec.get("bin") is not None:
        c.add(
            where,
            (*base, "version"),
            "`version:` and `bin:` together: a host-provided CLI is not installed",
            "remove bin: to have apply install this version, or remove version:",
        )
    elif backend in BACKENDS and BACKENDS[backend].cli is None:
        c.add(
            where,
            (*base, "version"),
            f"the {backend} backend has no CLI for apply to install",
            "remove version:",
        )


def _join(hint: str, rest: str) -> str:
    return f"{hint} {rest}" if hint else rest


def _check_placement(
    c: _Checker, fmap: SourceMap, path: PathKey, host: str, hosts: dict[str, set[str] | None]
) -> None:
    if host not in hosts:
        hint = did_you_mean(host, hosts)
        c.add(
            fmap.value(path),
            path,
            f"unknown host {host!r}",
            _join(hint, f"hosts are defined in servers.yaml: {', '.join(sorted(hosts))}"),
        )
    elif (roles := hosts[host]) is not None and WORKER not in roles:
        c.add(
            fmap.value(path),
            path,
            f"host {host!r} has no worker-host role",
            "add worker-host to its roles in servers.yaml, or place the worker elsewhere",
        )


def _check_llm(
    c: _Checker,
    fmap: SourceMap,
    base: PathKey,
    entry: dict[str, Any],
    defaults: dict[str, Any],
    llm: str,
    llms: dict[str, tuple[str | None, bool]],
) -> None:
    path = (*base, "llm")
    if llm not in llms:
        hint = did_you_mean(llm, llms)
        c.add(
            fmap.value(path),
            path,
            f"llm {llm!r} has no backend",
            _join(hint, f"use one of {', '.join(sorted(llms))}, or define it under `llms:`"),
        )
        return
    backend, needs_env = llms[llm]
    has_command = entry.get("command") is not None
    if backend == "command" and not has_command:
        c.add(
            fmap.value(base),
            (*base, "command"),
            "the command backend needs `command:`",
            "add the CLI's argv as a list, e.g. command: [my-cli, --print]",
        )
    for key, owner in OWNED_FIELDS.items():
        if owner != backend and entry.get(key) is not None and c.ok((*base, key)):
            c.add(
                fmap.key((*base, key)),
                (*base, key),
                f"`{key}:` is only used by the {owner} backend, not {backend}",
                f"remove it, or set llm: {' or '.join(OWNER_LLMS[owner])}",
            )
    budget = entry.get("budget")
    per_task = (*base, "budget", "per_task_usd")
    has_per_task = isinstance(budget, dict) and budget.get("per_task_usd") is not None
    if has_per_task and backend != "claude" and c.ok(per_task):
        c.add(
            fmap.key(per_task),
            per_task,
            f"`budget.per_task_usd` is only kept by the claude backend, not {backend} "
            "(its CLI cannot bound a task's cost)",
            "remove it; budget.daily_usd applies to every backend",
        )
    if needs_env and entry.get("env_file") is None and defaults.get("env_file") is None:
        c.add(
            fmap.value(path),
            (*base, "env_file"),
            f"llm {llm!r} needs an env_file with its provider token",
            "set env_file: /etc/fleet/env/<id>.env (a file on the host; fleetctl never reads it)",
        )


def _check_nats(c: _Checker, data: Any, fmap: SourceMap) -> None:
    nats = data.get("nats") if isinstance(data, dict) else None
    if not isinstance(nats, dict):
        return
    # The monitor is off unless monitor_port is written: only then can the two collide.
    port, monitor = nats.get("port", 4222), nats.get("monitor_port")
    path: PathKey = ("nats", "monitor_port")
    if port == monitor and c.ok(("nats", "port")) and c.ok(path):
        c.add(fmap.value(path), path, f"is the same as nats.port ({port})", "use another port")
    if c.brokers is not None and c.brokers > 1:
        _check_cluster_ports(c, nats, fmap, c.brokers)
    _check_replicas(c, nats, fmap)
    _check_duplicate_window(c, nats, fmap)
    c.problems += natslimits.problems(nats, fmap, c.ok)


def _check_cluster_ports(c: _Checker, nats: dict[str, Any], fmap: SourceMap, brokers: int) -> None:
    """On a cluster the brokers listen on cluster_port for routes, and each worker host's
    tunnels take 127.0.0.1:port+1 .. port+N (one per broker): none may be another's. The
    problem is shown at a port that was written (defaults never collide)."""
    defaults = NatsSettings.model_fields
    keys = ("port", "monitor_port", "cluster_port")
    if not all(c.ok(("nats", k)) for k in keys):
        return
    port = nats.get("port", defaults["port"].default)
    monitor = nats.get("monitor_port")
    cluster = nats.get("cluster_port", defaults["cluster_port"].default)
    if not (isinstance(port, int) and isinstance(cluster, int)):
        return
    tunnels = range(port + 1, port + brokers + 1)
    where = f"the tunnels' ports {tunnels.start}-{tunnels.stop - 1} (nats.port+1 to +{brokers})"

    def add(keys: tuple[str, ...], what: str) -> None:
        key = next(k for k in keys if k in nats)
        path: PathKey = ("nats", key)
        c.add(fmap.value(path), path, what, "use another port")

    if cluster == port:
        add(("cluster_port", "port"), f"nats.cluster_port and nats.port are both {port}")
    elif cluster == monitor:
        add(
            ("cluster_port", "monitor_port"),
            f"nats.cluster_port and nats.monitor_port are both {cluster}",
        )
    elif cluster in tunnels:
        add(("cluster_port", "port"), f"nats.cluster_port ({cluster}) is one of {where}")
    if isinstance(monitor, int) and monitor in tunnels:
        add(("monitor_port",), f"nats.monitor_port ({monitor}) is one of {where}")


def _check_replicas(c: _Checker, nats: dict[str, Any], fmap: SourceMap) -> None:
    """Each copy of a stream lives on another broker."""
    path: PathKey = ("nats", "replicas")
    replicas = nats.get("replicas")
    if not isinstance(replicas, int) or c.brokers is None or not c.ok(path):
        return
    if replicas > c.brokers:
        c.add(
            fmap.value(path),
            path,
            f"is {replicas}, but servers.yaml has {c.brokers} broker host(s): "
            "each copy lives on another broker",
            f"use at most {c.brokers}, or leave it unset",
        )


def _check_duplicate_window(c: _Checker, nats: dict[str, Any], fmap: SourceMap) -> None:
    """nats-server refuses a stream whose duplicate window is longer than its max age."""
    if not ("duplicate_window" in nats or "max_age" in nats):
        return
    if not (c.ok(("nats", "duplicate_window")) and c.ok(("nats", "max_age"))):
        return
    defaults = NatsSettings.model_fields
    window = nats.get("duplicate_window", defaults["duplicate_window"].default)
    age = nats.get("max_age", defaults["max_age"].default)
    try:
        if parse_duration(window) <= parse_duration(age):
            return
    except BadValue:
        return  # reported by its own check

    def written(key: str) -> str:
        return str(nats[key]) if key in nats else f"{defaults[key].default}s, the default"

    why = "nats-server refuses a stream whose duplicate window is longer than its max age"
    fix = "shorten nats.duplicate_window or lengthen nats.max_age"
    if "duplicate_window" in nats:
        path: PathKey = ("nats", "duplicate_window")
        what = f"is longer than nats.max_age ({written('max_age')}): {why}"
    else:
        path = ("nats", "max_age")
        what = f"is shorter than nats.duplicate_window ({written('duplicate_window')}): {why}"
    c.add(fmap.value(path), path, what, fix)
