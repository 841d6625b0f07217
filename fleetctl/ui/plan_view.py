"""A plan as people read it: Terraform-style symbols, one line per change, summary last."""

from __future__ import annotations

import difflib

from rich.console import Console
from rich.text import Text

from fleetctl.config.values import written_duration
from fleetctl.reconcile.departed import DepartedHost, what_is_there
from fleetctl.reconcile.plan.types import BusPlan, Change, HostPlan, Plan, Schedule

_STYLE = {"create": "green", "update": "yellow", "delete": "red"}


def summary_line(plan: Plan) -> str:
    s = plan.summary
    failed = [h.name for h in plan.hosts if h.error]
    counts = f"Plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy"
    if failed:
        bus = "; the bus not planned" if plan.bus and plan.bus.error else ""
        return f"{counts}; {len(failed)} host(s) not planned: {', '.join(failed)}{bus}."
    left = [d.name for d in plan.departed if d.pending]
    gone = f"{len(left)} host(s) that left servers.yaml to decommission: {', '.join(left)}."
    if plan.bus and plan.bus.error:
        return f"{counts}; the bus not planned (not observed)."
    if s.empty and plan.mode == "live":
        if left:
            return f"No changes to the fleet; {gone}"
        return "No changes. The fleet matches its configuration."
    return f"{counts}; {gone}" if left else f"{counts}."


def print_plan(console: Console, plan: Plan, *, show_diff: bool = False) -> None:
    """One print call per host: rich's per-call cost dominates on a 1,000-worker fleet."""
    if plan.mode == "offline":
        console.print(
            Text(
                "Offline plan: no host was contacted. It lists everything the fleet puts "
                "on each host.",
                style="dim",
            )
        )
    for warning in plan.warnings:
        console.print(Text(f"Warning: {warning}", style="bold yellow"))
    for gone in plan.departed:
        if gone.pending:
            console.print(Text(f"Warning: {_departed_warning(gone)}", style="bold yellow"))
    bus = plan.bus
    for host in plan.hosts:
        console.print()
        console.print(_host_block(host, bus if bus and bus.via == host.name else None, show_diff))
    for gone in plan.departed:
        console.print()
        console.print(_departed_block(gone))
    rollout = _schedule_block(plan.schedule)
    if rollout is not None:
        console.print()
        console.print(rollout)
    console.print()
    console.print(Text(summary_line(plan), style="bold"))


def _schedule_block(schedule: Schedule | None) -> Text | None:
    """The rollout's order, when fleet.yaml or `--batch` asks for batches: the bus's hosts
    first, then each batch of worker hosts."""
    if schedule is None or schedule.batch is None or not schedule.batches:
        return None
    hosts = sum(len(b) for b in schedule.batches)
    count = len(schedule.batches)
    head = f"Rollout: {hosts} worker host(s) in {count} batch(es) of {schedule.batch}"
    if schedule.first:
        head = f"Rollout: {', '.join(schedule.first)} first; then {head.removeprefix('Rollout: ')}"
    rules = f"; stops once more than {schedule.max_failed} fail"
    pause = f", {written_duration(schedule.pause)} apart" if schedule.pause else ""
    text = Text(f"{head}{pause}{rules}:", style="bold")
    for i, batch in enumerate(schedule.batches, 1):
        text.append(f"\n  batch {i}: {', '.join(batch)}", style="")
    return text


def _host_block(host: HostPlan, bus: BusPlan | None, show_diff: bool) -> Text:
    """A host's changes, then those of the bus when it lives there (as the plan read before
    the bus was a target of its own)."""
    block = Text()
    block.append(host.name, style="bold")
    block.append(f"  {host.address}  ({', '.join(host.roles)})", style="dim")
    if host.error:
        block.append(f"\n  ! not planned: {host.error}", style="bold red")
        return block
    if bus and bus.error:
        block.append(
            f"\n  ! bus not observed: {bus.error}; apply starts nats-server first, then "
            "creates what is missing",
            style="bold red",
        )
    changes = [*host.changes, *(bus.changes if bus else ())]
    unchanged = host.unchanged + (bus.unchanged if bus else 0)
    width = max((len(c.kind) + 1 + len(c.name) for c in changes), default=0)
    for change in changes:
        block.append("\n")
        _append_change(block, change, width)
        if show_diff:
            for line in diff_lines(change):
                block.append("\n      " + line, style=_diff_style(line))
    for note in host.notes:
        block.append(f"\n  · {note}", style="dim")
    if not changes:
        block.append("\n  no changes", style="dim")
    if unchanged:
        block.append(f"\n  ({unchanged} unchanged)", style="dim")
    return block


def _departed_warning(gone: DepartedHost) -> str:
    return (
        f"{gone.name} left servers.yaml, but what fleetctl put there is still there and "
        f"running: `fleetctl decommission {gone.name}` removes it"
    )


def _departed_block(gone: DepartedHost) -> Text:
    """A host that left servers.yaml: what fleetctl still owns there, and what to run."""
    block = Text()
    block.append(gone.name, style="bold")
    block.append(f"  {gone.address}  ({', '.join(gone.roles)})  left servers.yaml", style="dim")
    if gone.error:
        block.append(f"\n  ! not reached: {gone.error}", style="bold red")
    if not gone.pending:
        block.append("\n  nothing of fleetctl's is left there", style="dim")
        block.append(f"\n  `fleetctl decommission {gone.name}` forgets it", style="dim")
        return block
    where = "its manifest" if gone.source == "manifest" else f"as applied {gone.applied}"
    block.append(f"\n  still there ({where}): ", style="yellow")
    block.append(what_is_there(gone.resources))
    block.append(
        f"\n  `fleetctl decommission {gone.name}` removes it all"
        + (f" (or `--forget`, if {gone.name} is gone for good)" if gone.error else ""),
        style="dim",
    )
    return block


def _append_change(line: Text, change: Change, width: int) -> None:
    line.append("  ")
    line.append(change.symbol, style=f"bold {_STYLE[change.action]}")
    label = f"{change.kind} {change.name}"
    line.append(f" {label.ljust(width)}")
    attrs = "  ".join(value for _, value in change.attrs)
    if attrs:
        line.append(f"  {attrs}", style="dim")
    if change.sensitive:
        line.append(f"  {sensitive_marker(change)}", style="magenta")
    elif change.generated:
        line.append("  (completed by apply: tunnel keys it generates)", style="magenta")


def sensitive_marker(change: Change) -> str:
    if change.generated:
        return "(sensitive, generated by apply)"
    return f"(sensitive, sha256:{(change.sha256 or '')[:12]}…)"


def diff_lines(change: Change) -> list[str]:
    """Unified diff of a file change; secrets never: only their marker."""
    if change.kind != "file" or (change.action == "delete" and change.before is None):
        return []
    if change.sensitive:
        return [sensitive_marker(change)]
    before = _lines(change.before)
    after = _lines(change.after) if change.action != "delete" else []
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(before, after, f"a{change.name}", f"b{change.name}", n=3)
    ]


def _lines(content: bytes | None) -> list[str]:
    if content is None:
        return []
    return content.decode("utf-8", errors="replace").splitlines(keepends=True)


def _diff_style(line: str) -> str:
    if line.startswith("+") and not line.startswith("+++"):
        return "green"
    if line.startswith("-") and not line.startswith("---"):
        return "red"
    return "dim"
