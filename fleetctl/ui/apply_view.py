"""Apply as people watch it: one progress line per host, then a table of results."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

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
                self._progress.update(task, description=label, completed=done, total=total or None)

    def finished(self, result: HostResult) -> None:
        with self._lock:
            task = self._tasks.get(result.name)
            if task is not None:
                text = "done" if result.ok else f"[red]failed at {result.failed_step}[/]"
                self._progress.update(
                    task, description=text, completed=result.steps, total=result.steps or 1
                )
            if not self._console.is_terminal:
                state = "ok" if result.ok else f"FAILED at {result.failed_step}: {result.error}"
                self._console.print(f"{result.name}: {state}", markup=False, highlight=False)


def results_table(results: Sequence[HostResult], title: str = "Apply") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("host", style="bold")
    table.add_column("result")
    table.add_column("steps", justify="right")
    table.add_column("time", justify="right")
    table.add_column("error")
    for r in results:
        status = "[green]ok[/]" if r.ok else "[red]failed[/]"
        error = "" if r.ok else f"{r.failed_step}: {r.error}"
        table.add_row(r.name, status, str(r.steps), f"{r.seconds:.1f}s", error)
    return table
