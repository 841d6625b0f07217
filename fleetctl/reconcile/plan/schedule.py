"""How apply rolls a plan out: the bus's hosts first, then the worker hosts that have changes
in batches (fleet.yaml `rollout:`, `apply --batch`). Pure; the plan shows it, and the rollout
(fleetctl/reconcile/rollout.py) follows it."""

from __future__ import annotations

import dataclasses

from fleetctl.config.model import Rollout, Share
from fleetctl.reconcile.plan.types import Plan, Schedule


def schedule(plan: Plan, rollout: Rollout, batch: Share | None = None) -> Schedule:
    """`batch` (apply's `--batch`) overrides `rollout.batch`. Hosts that could not be
    observed, or have nothing to change, are in no batch."""
    homes = plan.bus.homes if plan.bus else ()
    reached = [h.name for h in plan.hosts if not h.error]
    first = tuple(n for n in reached if n in homes)
    changing = [h.name for h in plan.hosts if not h.error and h.changes and h.name not in first]
    size = batch or rollout.batch
    per = size.hosts(len(changing), at_least=1) if size is not None else len(changing)
    batches = tuple(tuple(changing[i : i + per]) for i in range(0, len(changing), max(per, 1)))
    return Schedule(
        first=first,
        batches=batches,
        batch=str(size) if size is not None else None,
        max_failed=rollout.max_failed.hosts(len(changing)),
        pause=rollout.pause,
    )


def scheduled(plan: Plan, rollout: Rollout, batch: Share | None = None) -> Plan:
    """The plan with its schedule, as `plan` and `apply` show it."""
    return dataclasses.replace(plan, schedule=schedule(plan, rollout, batch))
