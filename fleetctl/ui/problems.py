"""Print configuration problems as `file:line:col: field: what (fix)`, one per line."""

from __future__ import annotations

from rich.text import Text

from fleetctl.config.errors import Problem
from fleetctl.ui.terminal import err


def print_problems(problems: list[Problem]) -> None:
    console = err()
    for p in problems:
        line = Text()
        line.append(f"{p.mark}:", style="bold")
        if p.field:
            line.append(f" {p.field}:", style="cyan")
        line.append(f" {p.what}", style="red")
        if p.fix:
            line.append(f" ({p.fix})")
        console.print(line)
    noun = "problem" if len(problems) == 1 else "problems"
    console.print(Text(f"{len(problems)} {noun} found; nothing was changed.", style="bold red"))
