"""Which workers a task goes to: `--to`, `--select`, `--route`, `--any`, checked against the
fleet before anything is published. Which workers a selector or a route matches is the
fleet's own (fleetctl/config/routes.py).

Every problem is collected (an unknown id with a did-you-mean, a disabled worker, a selector
that matches nothing) so one run shows them all; then nothing is sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fleetctl.config import routes
from fleetctl.config.errors import shown
from fleetctl.config.model import Fleet, Worker
from fleetctl.config.pydantic_errors import did_you_mean


class TargetError(ValueError):
    """The task cannot be sent as asked; `problems` says every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Ask:
    """What the user asked for (CLI options or API arguments)."""

    to: tuple[str, ...] = ()
    select: Mapping[str, str] | None = None
    route: str | None = None
    any: bool = False


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    """KEY=VALUE arguments; a malformed one is a TargetError naming the option."""
    out: dict[str, str] = {}
    bad = [p for p in pairs if "=" not in p or not p.partition("=")[0].strip()]
    if bad:
        raise TargetError([f"{option} {shown(b)}: expected KEY=VALUE" for b in bad])
    for p in pairs:
        key, _, value = p.partition("=")
        out[key.strip()] = value.strip()
    return out


def _named(fleet: Fleet, ids: Sequence[str], problems: list[str]) -> list[Worker]:
    out: list[Worker] = []
    all_ids = [w.id for w in fleet.workers]
    for wid in ids:
        worker = fleet.worker(wid)
        if worker is None:
            hint = did_you_mean(wid, all_ids)
            problems.append(
                f"--to {shown(wid)}: no such worker in the fleet" + (f" ({hint})" if hint else "")
            )
        elif not worker.enabled:
            problems.append(
                f"--to {shown(wid)}: the worker is disabled (enabled: false in fleet.yaml), "
                "so nothing would run the task"
            )
        elif worker not in out:
            out.append(worker)
    return out


def resolve(
    fleet: Fleet,
    ask: Ask,
    load: Callable[[Sequence[str]], Mapping[str, int]] | None = None,
    *,
    pick: Callable[[Sequence[str]], str] = random.choice,
) -> list[str]:
    """The worker ids to publish to, in fleet order. `load` (queued plus in flight per
    worker) is asked only for `--any`; ties among the least loaded go to `pick`."""
    ids, any_ = matched(fleet, ask)
    if any_ and len(ids) > 1:
        loads = load(ids) if load is not None else {}
        least = min(loads.get(i, 0) for i in ids)
        ids = [pick([i for i in ids if loads.get(i, 0) == least])]
    return ids


def candidates(fleet: Fleet, ask: Ask) -> list[tuple[str, ...]]:
    """Who could run the task, one group per copy: each target alone, or, for `--any`
    and a `pick: any` route, one group of every worker that may be picked."""
    ids, any_ = matched(fleet, ask)
    return [tuple(ids)] if any_ else [(i,) for i in ids]


def matched(fleet: Fleet, ask: Ask) -> tuple[list[str], bool]:
    """Every worker the ask names or matches, in fleet order, and whether only one of them
    gets the task (`--any`, a `pick: any` route); TargetError with every problem."""
    problems: list[str] = []
    chosen: list[Worker] = []
    any_ = ask.any
    if ask.route is not None:
        route = fleet.routes.get(ask.route)
        if route is None:
            hint = did_you_mean(ask.route, fleet.routes)
            names = ", ".join(fleet.routes) or "none are defined in fleet.yaml"
            problems.append(
                f"--route {shown(ask.route)}: no such route"
                + (f" ({hint})" if hint else f" (routes: {names})")
            )
        else:
            chosen += routes.select(fleet, route.select, problems, f"route {shown(route.name)}:")
            any_ = any_ or route.pick == "any"
    if ask.to:
        chosen += [w for w in _named(fleet, ask.to, problems) if w not in chosen]
    if ask.select:
        picked = routes.select(fleet, ask.select, problems)
        # --to and --select together: the named workers that also match
        chosen = [w for w in chosen if w in picked] if ask.to or ask.route else picked
        if not chosen and not problems:
            problems.append("no worker is both named by --to/--route and matched by --select")
    if not (ask.to or ask.select or ask.route):
        problems.append("no target: give --to ID, --select KEY=VALUE or --route NAME")
    if problems:
        raise TargetError(problems)
    return [w.id for w in fleet.workers if w in chosen], any_
