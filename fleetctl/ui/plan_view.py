"""A plan as people read it: Terraform-style symbols, one line per change, summary last."""

from __future__ import annotations

import difflib

from rich.console import Console
from rich.text import Text

from fleetctl.plan import Change, HostPlan, Plan

_STYLE = {"create": "green", "update": "yellow", "delete": "red"}


def summary_line(plan: Plan) -> str:
    s = plan.summary
    failed = [h.name for h in plan.hosts if h.error]
    if failed:
        return (
            f"Plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy; "
            f"{len(failed)} host(s) not planned: {', '.join(failed)}."
        )
    if s.empty and plan.mode == "live":
        return "No changes. The fleet matches its configuration."
    return f"Plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy."


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
    for host in plan.hosts:
        console.print()
        console.print(_host_block(host, show_diff))
    console.print()
    console.print(Text(summary_line(plan), style="bold"))


def _host_block(host: HostPlan, show_diff: bool) -> Text:
    block = Text()
    block.append(host.name, style="bold")
    block.append(f"  {host.address}  ({', '.join(host.roles)})", style="dim")
    if host.error:
        block.append(f"\n  ! not planned: {host.error}", style="bold red")
        return block
    width = max((len(c.kind) + 1 + len(c.name) for c in host.changes), default=0)
    for change in host.changes:
        block.append("\n")
        _append_change(block, change, width)
        if show_diff:
            for line in diff_lines(change):
                block.append("\n      " + line, style=_diff_style(line))
    for note in host.notes:
        block.append(f"\n  · {note}", style="dim")
    if not host.changes:
        block.append("\n  no changes", style="dim")
    if host.unchanged:
        block.append(f"\n  ({host.unchanged} unchanged)", style="dim")
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
        line.append(f"  {sensitive_marker(change.sha256)}", style="magenta")


def sensitive_marker(sha256: str | None) -> str:
    return f"(sensitive, sha256:{(sha256 or '')[:12]}…)"


def diff_lines(change: Change) -> list[str]:
    """Unified diff of a file change; secrets never: only their marker."""
    if change.kind != "file" or (change.action == "delete" and change.before is None):
        return []
    if change.sensitive:
        return [sensitive_marker(change.sha256)]
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
