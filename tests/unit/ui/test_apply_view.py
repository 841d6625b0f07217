"""Apply's results and progress show errors and step names as written: an error carries a
host's or a file's own words, and rich must never read them as markup."""

from __future__ import annotations

import io

from rich.console import Console

from fleetctl.reconcile.rollout import HostResult
from fleetctl.ui.apply_view import ProgressReporter, results_table

ERROR = "cannot read /srv/[red]x[/] (see [bold]log[/bold]) [link=http://evil]here[/link]"


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=400, force_terminal=terminal, color_system=None), buf


def test_the_results_table_shows_an_error_as_written() -> None:
    console, buf = _console(False)
    failed = HostResult("node-1", ok=False, steps=3, failed_step="upload [x]", error=ERROR)
    console.print(results_table([failed]))
    assert f"upload [x]: {ERROR}" in buf.getvalue()


def test_progress_shows_a_failed_step_and_a_label_as_written() -> None:
    console, buf = _console(True)
    with ProgressReporter(console, ["node-1"]) as reporter:
        reporter.step("node-1", "write /etc/[b]fleet[/b]", 1, 3)
        console.print(reporter._progress.get_renderable())
        reporter.finished(HostResult("node-1", ok=False, steps=1, failed_step="s [i]x[/i]"))
        console.print(reporter._progress.get_renderable())
    shown = buf.getvalue()
    assert "write /etc/[b]fleet[/b]" in shown
    assert "failed at s [i]x[/i]" in shown
