"""The plan as JSON, for CI and other tools. The schema is versioned: docs/plan-json.md."""

from __future__ import annotations

from typing import Any

from fleetctl.reconcile.plan.types import Change, Plan

FORMAT_VERSION = 2  # 2: the bus's changes moved from the broker host to "bus"


def plan_to_json(plan: Plan, *, with_content: bool = False) -> dict[str, Any]:
    s = plan.summary
    return {
        "format_version": FORMAT_VERSION,
        "mode": plan.mode,
        "fleet_revision": plan.revision,
        "warnings": list(plan.warnings),
        "hosts": [
            {
                "name": h.name,
                "address": h.address,
                "roles": list(h.roles),
                "changes": [_change(c, with_content) for c in h.changes],
                "unchanged": h.unchanged,
                "notes": list(h.notes),
                "error": h.error,
            }
            for h in plan.hosts
        ],
        "bus": None
        if plan.bus is None
        else {
            "via": plan.bus.via,
            "changes": [_change(c, with_content) for c in plan.bus.changes],
            "unchanged": plan.bus.unchanged,
            "error": plan.bus.error,
            "homes": list(plan.bus.homes),
            "meta_leader": plan.bus.meta_leader,
        },
        "departed": [
            {
                "name": d.name,
                "address": d.address,
                "roles": list(d.roles),
                "applied": d.applied,
                "resources": list(d.resources),
                "source": d.source,
                "error": d.error,
            }
            for d in plan.departed
        ],
        "rollout": None
        if plan.schedule is None
        else {
            "first": list(plan.schedule.first),
            "batches": [list(b) for b in plan.schedule.batches],
            "batch": plan.schedule.batch,
            "max_failed": plan.schedule.max_failed,
            "pause": plan.schedule.pause,
        },
        "summary": {"add": s.add, "change": s.change, "destroy": s.destroy},
    }


def _change(change: Change, with_content: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": change.action,
        "type": change.kind,
        "name": change.name,
        "worker": change.worker,
        "attributes": dict(change.attrs),
        "sensitive": change.sensitive,
    }
    if change.sha256 is not None:
        out["sha256"] = change.sha256
    if change.generated:
        out["generated"] = True
    if with_content and change.kind == "file" and not change.sensitive:
        out["content"] = None if change.after is None else change.after.decode("utf-8", "replace")
    return out
