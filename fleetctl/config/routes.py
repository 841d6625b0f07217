"""Route membership: which workers a selector (a route's `select:`, `--select`) matches, the
members of each `pick: any` route's shared queue, and what is wrong with a route of
fleet.yaml. Read by the loader, desired state, the credentials and task addressing alike."""

from __future__ import annotations

from collections.abc import Mapping

from fleetctl.config.errors import shown
from fleetctl.config.model import Fleet, Route, Worker
from fleetctl.config.pydantic_errors import did_you_mean

# Worker fields a selector may name besides labels.
FIELDS = ("lang", "role", "llm", "model", "host")


def attributes(worker: Worker) -> dict[str, str]:
    """What a selector can match on a worker: its labels, then its fields."""
    values = dict(worker.labels)
    for name in FIELDS:
        value = getattr(worker, name)
        if value is not None:
            values[name] = str(value)
    return values


def matches(worker: Worker, select: Mapping[str, str]) -> bool:
    have = attributes(worker)
    return all(have.get(k) == v for k, v in select.items())


def select(
    fleet: Fleet,
    selector: Mapping[str, str],
    problems: list[str],
    where: str = "--select",
    *,
    need_enabled: bool = True,
) -> list[Worker]:
    """The enabled workers `selector` matches; what is wrong with it is added to `problems`
    (a key no worker has, nothing matched, with `need_enabled` only disabled workers)."""
    known = set(FIELDS) | {k for w in fleet.workers for k in w.labels}
    for key in selector:
        if key not in known:
            hint = did_you_mean(key, known)
            problems.append(
                f"{where} {shown(key)}: no worker has this label or field"
                + (f" ({hint})" if hint else f" (fields: {', '.join(FIELDS)})")
            )
    found = [w for w in fleet.workers if matches(w, selector)]
    enabled = [w for w in found if w.enabled]
    if not found and not problems:
        wanted = ", ".join(f"{k}={v}" for k, v in selector.items())
        problems.append(f"{where} {shown(wanted)} matches no worker of the fleet")
    elif found and not enabled and need_enabled:
        ids = ", ".join(w.id for w in found)
        problems.append(f"{where} matches only disabled workers ({ids}): nothing would run it")
    return enabled


def queues(fleet: Fleet) -> dict[str, tuple[str, ...]]:
    """Each `pick: any` route (a shared queue on the bus) with its enabled members."""
    return {
        name: tuple(w.id for w in fleet.workers if w.enabled and matches(w, route.select))
        for name, route in fleet.routes.items()
        if route.pick == "any"
    }


def queues_of(fleet: Fleet) -> dict[str, tuple[str, ...]]:
    """Each enabled worker's shared queues: what it pulls from besides its own inbox (and
    may pull from: its credentials name them)."""
    member: dict[str, tuple[str, ...]] = {w.id: () for w in fleet.workers if w.enabled}
    for route, ids in queues(fleet).items():
        for wid in ids:
            member[wid] = (*member[wid], route)
    return member


def route_problems(fleet: Fleet, route: Route) -> list[str]:
    """What is wrong with a route of fleet.yaml (checked when the fleet is loaded). One
    whose workers are all disabled is valid (disabling a worker must not break the file);
    sending on it is refused."""
    problems: list[str] = []
    select(fleet, route.select, problems, "select", need_enabled=False)
    return problems
