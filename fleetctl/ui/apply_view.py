"""Apply as people watch it: one progress line per host, then a table of results."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from fleetctl.reconcile.rollout import HostResult, Reporter


class ProgressReporter(Reporter):
    def __init__(self, console: Console, hosts: Sequence[str]) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[host]}", style="bold"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        width = max((len(h) for h in hosts), default=0)
        self._tasks: dict[str, TaskID] = {
            h: self._progress.add_task("waiting", host=h.ljust(width), total=None) for h in hosts
        }
        self._lock = threading.Lock()
        self._console = console

    def __enter__(self) -> ProgressReporter:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def step(self, host: str, label: str, done: int, total: int) -> None:
        with self._lock:
            task = self._tasks.get(host)
            if task is not None:
                self._progress.update(
                    task, description=escape(label), completed=done, total=total or None
                )

    def note(self, host: str, text: str) -> None:
        """A line of its own: what a restart waits for, a batch, a rollback."""
        with self._lock:
            self._console.print(f"{host}: {text}", markup=False, highlight=False)

    def finished(self, result: HostResult) -> None:
        with self._lock:
            task = self._tasks.get(result.name)
            if task is not None:
                text = "done" if result.ok else f"[red]{escape(_state(result))}[/]"
                self._progress.update(
                    task, description=text, completed=result.steps, total=result.steps or 1
                )
            if not self._console.is_terminal:
                state = "ok" if result.ok else f"FAILED at {result.failed_step}: {result.error}"
                if result.skipped:
                    state = f"NOT STARTED: {result.error}"
                self._console.print(f"{result.name}: {state}", markup=False, highlight=False)


def _state(result: HostResult) -> str:
    if result.skipped:
        return "not started"
    back = ", rolled back" if result.rolled_back else ""
    return f"failed at {result.failed_step}{back}"


def failure_summary(results: Sequence[HostResult]) -> str:
    """What went wrong, in one line, and what to do about it."""
    failed = [r for r in results if not r.ok and not r.skipped]
    back = [r for r in failed if r.rolled_back]
    skipped = [r for r in results if r.skipped]
    parts = [f"{len(failed)} host(s) failed"]
    if back:
        parts.append(f"{len(back)} of them rolled back to their previous version")
    if skipped:
        parts.append(f"{len(skipped)} not started (the rollout stopped)")
    return "; ".join(parts) + ". Fix the cause and run apply again: it finishes what is left."


def results_table(results: Sequence[HostResult], title: str = "Apply") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("host", style="bold")
    table.add_column("result")
    table.add_column("steps", justify="right")
    table.add_column("time", justify="right")
    table.add_column("error")
    for r in results:
        status = "[green]ok[/]" if r.ok else "[red]failed[/]"
        if r.rolled_back:
            status = "[red]failed, rolled back[/]"
        if r.skipped:
            status = "[yellow]not started[/]"
        error = "" if r.ok else f"{r.failed_step}: {r.error}"
        if r.skipped:
            error = str(r.error)
        # Errors carry hosts' and files' own words: shown as they are, never read as markup.
        table.add_row(Text(r.name), status, str(r.steps), f"{r.seconds:.1f}s", Text(error))
    return table
