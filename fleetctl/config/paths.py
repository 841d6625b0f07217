"""Paths in fleet.yaml that decide what a worker, or nats-server, gets on a host.

A worker owns its directory `<work_base>/<worker_id>` and may write everything below it
(`ReadWritePaths=`); systemd reads its `env_file` as root and hands the variables to it; the
nats user owns `nats.store_dir` (mode 0700). So a fleet.yaml could hand a worker every
worker's credentials (`work_base: /etc/fleet` and a worker named `creds`), the tunnel's key
(a worker named `tunnel` runs as the tunnel's user), or another worker's provider tokens
(its env_file). `validate` refuses all of them, at the key to change, before anything is
rendered (docs/security.md, "Hostile paths in fleet.yaml").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetctl import layout
from fleetctl.config.errors import Problem, shown
from fleetctl.config.model import service_user
from fleetctl.config.yamlsource import PathKey, SourceMap, dotted

# Trees of the system itself: nothing of a worker's, or the broker's store, belongs in them.
SYSTEM_TREES: tuple[str, ...] = ("/etc", "/usr", "/boot", "/dev", "/proc", "/sys", "/run")
SYSTEM_TREES += ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Directories the system shares with other software: as a work_base, a worker id would name
# one of their entries (a worker `dpkg` under /var/lib would own /var/lib/dpkg).
SHARED_DIRS: tuple[str, ...] = (
    "/",
    "/var",
    "/var/lib",
    "/var/cache",
    "/var/log",
    "/var/spool",
    "/opt",
    "/srv",
)
SHARED_DIRS += ("/home", "/root", "/mnt", "/media", "/tmp", "/var/tmp")  # noqa: S108
OWN_USERS = {layout.TUNNEL_USER: "the tunnel's user, which owns the tunnel's SSH key"}
DEFAULT_STORE_DIR = "/var/lib/nats/jetstream"
_OWN_DIR_FIX = "use a directory of its own, like {default}, the default"


def _norm(path: str) -> str:
    """As the schema keeps it: without a trailing slash (AbsPath)."""
    return path.rstrip("/") or "/"


def _inside(path: str, parent: str) -> bool:
    return parent == "/" or path.startswith(parent + "/")


def _reaches(path: str, own: dict[str, str]) -> str | None:
    """How `path` meets one of `own`'s directories: is it, lies inside it, or holds it
    (the most telling one: the deepest it lies in, the highest it holds)."""
    for d in sorted(own, key=len, reverse=True):
        if path == d:
            return f"is the directory of {own[d]}"
        if _inside(path, d):
            return f"is inside {d}, the directory of {own[d]}"
    for d in sorted(own, key=len):
        if _inside(d, path):
            return f"holds {d}, the directory of {own[d]}"
    return None


def _system(path: str) -> str | None:
    for tree in SYSTEM_TREES:
        if path == tree or _inside(path, tree):
            return f"is {'inside ' if path != tree else ''}{tree}, a directory of the system's"
    if path in SHARED_DIRS:
        return "holds directories of the system's and of other software"
    return None


def problems(data: Any, fmap: SourceMap, ok: Callable[[PathKey], bool]) -> list[Problem]:
    """Every hostile or colliding path in fleet.yaml's raw data (values that failed their
    own check are skipped: `ok`)."""
    if not isinstance(data, dict):
        return []
    found: list[Problem] = []
    store = _store_dir(_mapping(data, "nats"), fmap, ok, found)
    defaults = _mapping(data, "defaults")
    base = _work_base(defaults, fmap, ok, found)
    workers = data.get("workers")
    listed = workers if isinstance(workers, list) else []
    entries = [(i, e) for i, e in enumerate(listed) if isinstance(e, dict)]
    for i, entry in entries:
        _worker_dir(i, entry, base, store, fmap, ok, found)
    _env_files(entries, defaults, fmap, ok, found)
    return found


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _store_dir(
    nats: dict[str, Any], fmap: SourceMap, ok: Callable[[PathKey], bool], found: list[Problem]
) -> str | None:
    """The broker's JetStream store (None: it failed a check); the nats user owns it."""
    path: PathKey = ("nats", "store_dir")
    value = nats.get("store_dir", DEFAULT_STORE_DIR)
    if not isinstance(value, str) or not ok(path):
        return None
    store = _norm(value)
    own = {d: what for d, what in layout.OWN_DIRS.items() if d != layout.NATS_HOME}
    why = _reaches(store, own) or _system(store)
    if why is None or "store_dir" not in nats:
        return store
    found.append(
        Problem(
            fmap.value(path),
            dotted(path),
            f"{shown(store)} {why}: the nats user would own it, mode 0700",
            _OWN_DIR_FIX.format(default=DEFAULT_STORE_DIR),
        )
    )
    return None


def _work_base(
    defaults: dict[str, Any], fmap: SourceMap, ok: Callable[[PathKey], bool], found: list[Problem]
) -> str | None:
    """The parent of the workers' directories (None: it failed a check, so the workers'
    directories are not checked one by one)."""
    path: PathKey = ("defaults", "work_base")
    value = defaults.get("work_base", layout.DEFAULT_WORK_BASE)
    if not isinstance(value, str) or not ok(path):
        return None
    base = _norm(value)
    own_dir = _reaches(base, layout.OWN_DIRS)
    why = own_dir if own_dir and not own_dir.startswith("holds") else _system(base)
    if why is None:
        return base
    owns = "each worker owns its directory <work_base>/<worker_id> and may write all below it"
    if base in SHARED_DIRS:
        owns += ", so a worker named like one of those would own it"
    found.append(
        Problem(
            fmap.value(path),
            dotted(path),
            f"{shown(base)} {why}: {owns}",
            _OWN_DIR_FIX.format(default=layout.DEFAULT_WORK_BASE),
        )
    )
    return None


def _worker_dir(
    i: int,
    entry: dict[str, Any],
    base: str | None,
    store: str | None,
    fmap: SourceMap,
    ok: Callable[[PathKey], bool],
    found: list[Problem],
) -> None:
    path: PathKey = ("workers", i, "worker_id")
    wid = entry.get("worker_id")
    if not isinstance(wid, str) or not ok(path):
        return
    user = service_user(wid)
    if user in OWN_USERS:
        found.append(
            Problem(
                fmap.value(path),
                dotted(path),
                f"{shown(wid)} would run as the service user {user!r}, {OWN_USERS[user]}",
                "choose another worker_id",
            )
        )
        return
    if base is None:
        return
    directory = f"{base.rstrip('/')}/{wid}"
    own = dict(layout.OWN_DIRS)
    if store is not None:
        own[store] = "the broker's JetStream store (nats.store_dir)"
    why = _reaches(directory, own)
    if why is None:
        return
    found.append(
        Problem(
            fmap.value(path),
            dotted(path),
            f"the worker's directory {directory} (work_base + worker_id) {why}: the worker "
            "would own it and may write all below it",
            "choose another worker_id, or another defaults.work_base",
        )
    )


def _env_files(
    entries: list[tuple[int, dict[str, Any]]],
    defaults: dict[str, Any],
    fmap: SourceMap,
    ok: Callable[[PathKey], bool],
    found: list[Problem],
) -> None:
    """Each env_file is one worker's, and lies in /etc/fleet/env/ unless the worker says
    otherwise (`env_file_outside_fleet: true`): systemd reads it as root and hands every
    variable in it to the worker."""
    inherited: list[str] = []  # workers that read defaults.env_file from outside the dir
    shared: dict[tuple[str, str], list[tuple[str, PathKey]]] = {}
    default_path: PathKey = ("defaults", "env_file")
    for i, entry in entries:
        wid = entry.get("worker_id")
        name = wid if isinstance(wid, str) and ok(("workers", i, "worker_id")) else f"[{i}]"
        where: PathKey = ("workers", i, "env_file")
        value = entry.get("env_file")
        if value is None:
            where, value = default_path, defaults.get("env_file")
        if not isinstance(value, str) or not ok(where):
            continue
        env_file = _norm(value)
        host = entry.get("host")
        if isinstance(host, str) and ok(("workers", i, "host")):
            shared.setdefault((host, env_file), []).append((name, where))
        allowed = entry.get("env_file_outside_fleet") is True
        theirs = _fleetctls_file(env_file)
        if theirs is not None:
            if where == default_path and any(p.field == dotted(where) for p in found):
                continue  # defaults.env_file: said once, at that key
            found.append(
                Problem(
                    fmap.value(where),
                    dotted(where),
                    f"{shown(env_file)} {theirs}: systemd would read it as root and hand what "
                    "it finds there to the worker, whatever env_file_outside_fleet says",
                    f"name the worker's own file, like {layout.ENV_DIR}/<id>.env",
                )
            )
        elif env_file == layout.ENV_DIR:
            found.append(
                Problem(
                    fmap.value(where),
                    dotted(where),
                    f"{shown(env_file)} is the directory of the env files, not one of them",
                    f"name the worker's own file in it, like {layout.ENV_DIR}/<id>.env",
                )
            )
        elif not _inside(env_file, layout.ENV_DIR) and not allowed:
            if where == default_path:
                inherited.append(name)
            else:
                found.append(_outside(fmap, where, env_file, "on this worker"))
    if inherited:
        value = _norm(str(defaults["env_file"]))
        names = ", ".join(shown(n) for n in inherited)
        found.append(_outside(fmap, default_path, value, f"on each worker that reads it: {names}"))
    for (host, env_file), readers in shared.items():
        if len(readers) < 2:
            continue
        own = [where for _, where in readers[1:] if where != default_path]
        where = own[0] if own else default_path
        names = ", ".join(shown(n) for n, _ in readers)
        found.append(
            Problem(
                fmap.value(where),
                dotted(where),
                f"{shown(env_file)} is the env file of {len(readers)} workers on host "
                f"{host!r} ({names}): each would get the others' provider tokens",
                f"give each worker its own file, like {layout.ENV_DIR}/<id>.env",
            )
        )


def _fleetctls_file(env_file: str) -> str | None:
    """How an env file lies in one of fleetctl's own directories other than the env files'
    (a worker's creds, the tunnel's key, the units...): never a file meant for a worker, so
    no worker's consent makes it one."""
    if env_file == layout.ENV_DIR or _inside(env_file, layout.ENV_DIR):
        return None
    own = {d: what for d, what in layout.OWN_DIRS.items() if d != layout.ENV_DIR}
    for d in sorted(own, key=len, reverse=True):
        if env_file == d or _inside(env_file, d):
            return f"is in {d}, the directory of {own[d]}"
    return None


def _outside(fmap: SourceMap, where: PathKey, env_file: str, on: str) -> Problem:
    return Problem(
        fmap.value(where),
        dotted(where),
        f"{shown(env_file)} is outside {layout.ENV_DIR}/: systemd reads an env file as root "
        "and hands every variable in it to the worker, so it must be a file meant for it",
        f"move it to {layout.ENV_DIR}/<id>.env, or set env_file_outside_fleet: true {on}",
    )
