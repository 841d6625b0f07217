"""Results side by side: one column per worker in a wide terminal, one block per worker
stacked when it is narrow; their differences; and live progress while waiting."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fleetctl.tasks.activity import describe, pause_text
from fleetctl.tasks.messages import Result

TRIM_LINES = 20  # output lines shown per worker unless --full
STDERR_LINES = 5  # stderr lines shown for a run that did not complete, unless --full
MIN_COLUMN = 38  # narrower than this per worker: stack instead
MAX_COLUMN = 64
STYLES = {"completed": "green", "failed": "red", "timeout": "red", "rejected": "red"}
STYLES |= {"dead-lettered": "red", "lost": "red", "running": "yellow", "queued": "dim"}
STYLES |= {"passed": "green", "cancelled": "magenta"}
UNSOLICITED = "NO: never sent this task"


def state(r: Result) -> str:
    """`running 45s: turn 3, Edit, 18.2k tokens, $0.0412`, `queued (w1 paused: rate limited
    until 14:05)`, or the status alone: what a target is at, with what its worker says."""
    text = r.status + (f" {r.elapsed_s:.0f}s" if r.elapsed_s is not None else "")
    doing = r.body.get("activity")
    if r.status == "running" and isinstance(doing, dict) and describe(doing):
        text += f": {describe(doing)}"
    pause = r.body.get("paused")
    if r.status == "queued" and isinstance(pause, dict):
        text += f" ({pause.get('worker_id')} {pause_text(pause)})"
    return text


def _seconds(value: Any) -> str:
    return f"{float(value):.1f}s" if isinstance(value, int | float) else "-"


def _tokens(usage: Any) -> str:
    if not isinstance(usage, dict):
        return "-"
    inp, out = usage.get("input_tokens"), usage.get("output_tokens")
    if inp is None and out is None:
        return "-"
    return f"{inp or 0} in / {out or 0} out"


def facts(r: Result) -> list[tuple[str, str]]:
    """The per-worker lines above the output."""
    b = r.body
    cost = b.get("cost_usd")
    rows = [("sent to", UNSOLICITED)] if r.unsolicited else []
    rows += [
        ("status", state(r)),
        ("llm", str(b.get("llm") or "-")),
        ("model", str(b.get("model") or "-")),
        ("host", str(b.get("host") or "-")),
        ("attempt", str(b.get("attempt") or "-")),
        ("duration", _seconds(b.get("duration_s"))),
        ("tokens", _tokens(b.get("usage"))),
        ("cost", f"${cost:.4f}" if isinstance(cost, int | float) else "-"),
        ("exit code", "-" if b.get("exit_code") is None else str(b.get("exit_code"))),
    ]
    if r.reason is not None:
        rows.append(("error", r.reason))
    code = b.get("code")
    if isinstance(code, dict):
        rows += code_facts(code)
    if r.judgment is not None:
        comment = str(r.judgment.get("comment") or "")
        verdict = str(r.judgment.get("verdict"))
        rows.append(("judged", verdict + (f": {comment}" if comment else "")))
    return rows


def diffstat(code: dict[str, Any]) -> str:
    """`3 files +12 -4`, or `no change`."""
    files = code.get("files")
    count = len(files) if isinstance(files, list) else 0
    if not count:
        return "no change"
    more = "+" if code.get("files_truncated") else ""
    lines = f"+{code.get('insertions', 0)} -{code.get('deletions', 0)}"
    return f"{count}{more} file{'s' if count != 1 else ''} {lines}"


def check_state(step: Any) -> str:
    """`passed`, `failed (exit 1)`, or `-` when none ran."""
    if not isinstance(step, dict):
        return "-"
    if step.get("passed"):
        return "passed"
    code = step.get("exit_code")
    return "failed" + (f" (exit {code})" if code is not None else " (did not start)")


def code_facts(code: dict[str, Any]) -> list[tuple[str, str]]:
    """A code task's lines: what changed, whether its check passed, where its change is."""
    rows = [("change", diffstat(code)), ("check", check_state(code.get("check")))]
    if isinstance(code.get("setup"), dict) and not code["setup"].get("passed"):
        rows.append(("setup", check_state(code["setup"])))
    branch = code.get("branch")
    if branch:
        rows.append(("branch", f"{branch}{' (pushed)' if code.get('pushed') else ''}"))
    if code.get("pull_request_url"):
        rows.append(("pr", str(code["pull_request_url"])))
    if code.get("phase") and code.get("error"):
        rows.append((str(code["phase"]), str(code["error"])))
    return rows


def _output(r: Result, full: bool) -> Text:
    lines = r.output.splitlines()
    if not full and len(lines) > TRIM_LINES:
        more = len(lines) - TRIM_LINES
        lines = [*lines[:TRIM_LINES], f"... {more} more lines (--full shows them)"]
    if r.body.get("output_truncated"):
        lines.append(f"[cut by the worker at {r.body.get('output_bytes')} bytes]")
    shown = Text("\n".join(lines))  # plain Text: nothing from a worker is read as markup
    stderr = _stderr(r, full)
    if stderr.plain:
        shown.append("\n" if shown.plain else "").append_text(stderr)
    return shown


def _stderr(r: Result, full: bool) -> Text:
    """What the CLI wrote on stderr, for a run that did not complete (where the reason
    usually is): its last STDERR_LINES lines, or all the poller kept with --full."""
    if r.ok or not r.final:
        return Text()
    lines = r.stderr_tail.rstrip("\n").splitlines()
    if not lines:
        return Text()
    if full or len(lines) <= STDERR_LINES:
        head = "stderr:"
    else:
        head = f"stderr, last {STDERR_LINES} of {len(lines)} lines (--full shows them):"
        lines = lines[-STDERR_LINES:]
    return Text(head + "\n", "bold").append("\n".join(lines))


def _title(r: Result) -> Text:
    """The worker's name; an unsolicited answer says so where it cannot be missed."""
    title = Text(r.worker_id)
    if r.unsolicited:
        title.append(" (unsolicited)", "bold red")
    return title


def _cell(r: Result, full: bool) -> RenderableType:
    """The facts, each value wrapped under itself (a long error is never cut at the
    edge), a blank line, then the output."""
    head = Table.grid(padding=(0, 1))
    head.add_column(style="bold", no_wrap=True, min_width=9)
    head.add_column(overflow="fold")
    for label, value in facts(r):
        first = value.split(" ")[0]
        style = STYLES.get(first, "") if label in ("status", "check", "setup", "error") else ""
        style = "bold red" if label == "sent to" else style
        head.add_row(label, Text(value, style, no_wrap=False, overflow="fold"))
    body = _output(r, full)
    body.no_wrap, body.overflow = False, "fold"
    return Group(head, Text(""), body)


def side_by_side(
    console: Console, task_id: str, results: Sequence[Result], *, full: bool = False
) -> None:
    if not results:
        console.print(Text(f"no results for {task_id} yet"))
        return
    if console.width >= MIN_COLUMN * len(results):
        widest = max(MIN_COLUMN, min(MAX_COLUMN, console.width // len(results) - 3))
        table = Table(title=Text(task_id), show_lines=False)
        for r in results:
            table.add_column(_title(r), overflow="fold", max_width=widest)
        table.add_row(*(_cell(r, full) for r in results))
        console.print(table)
        return
    for r in results:
        console.print(Panel(_cell(r, full), title=_title(r), title_align="left"))


def _patch_line(line: str) -> Text:
    if line.startswith(("+++", "---")):
        return Text(line, "bold")
    if line.startswith("+"):
        return Text(line, "green")
    if line.startswith("-"):
        return Text(line, "red")
    if line.startswith("@@"):
        return Text(line, "cyan")
    if line.startswith("diff --git "):
        return Text(line, "bold yellow")
    return Text(line)


def patches(console: Console, results: Sequence[Result]) -> None:
    """Each worker's change: a heading with its diffstat and check, then its patch, coloured."""
    from fleetctl.tasks.changes import Change

    for r in results:
        code = r.body.get("code")
        head = Text(f"== {r.worker_id}: ", "bold")
        if not isinstance(code, dict):
            head.append(f"{r.status}, no change to show")
            console.print(head)
            continue
        head.append(f"{diffstat(code)}, check {check_state(code.get('check'))}")
        console.print(head)
        text = Change(r.worker_id, code).patch.decode(errors="replace")
        for line in text.splitlines():
            console.print(_patch_line(line))
        if code.get("patch_truncated"):
            console.print(
                Text(
                    "[the patch was cut to fit the result: --patch says where the rest is]",
                    "yellow",
                )
            )


def compared(console: Console, a: str, b: str, lines: Sequence[str]) -> None:
    """Two workers' changes compared (`-` only A's, `+` only B's)."""
    if not lines:
        console.print(Text(f"{a} and {b} made the same change"))
        return
    for line in lines:
        console.print(_patch_line(line))


def diff(console: Console, results: Sequence[Result]) -> None:
    """Each output against the first one's, as a unified diff; identical ones say so."""
    done = [r for r in results if r.final]
    if len(done) < 2:
        console.print(Text("fewer than two results: nothing to compare"))
        return
    base = done[0]
    for other in done[1:]:
        lines = list(
            difflib.unified_diff(
                base.output.splitlines(),
                other.output.splitlines(),
                fromfile=_title(base).plain,
                tofile=_title(other).plain,
                lineterm="",
            )
        )
        if not lines:
            console.print(Text(f"{_title(base).plain} and {_title(other).plain}: same output"))
        for line in lines:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            console.print(Text(line, style))


class Progress:
    """`task send --wait`: each target's state as it changes. A live table on a terminal;
    one line per change otherwise (logs, tests, the README)."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled  # off: shows nothing (--json)
        self._seen: dict[str, str] = {}
        self._live: Any = None

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(Text(""), console=self.console, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, results: list[Result]) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            table = Table.grid(padding=(0, 2))
            for r in results:
                table.add_row(Text(r.worker_id), Text(state(r), STYLES.get(r.status, "")))
            self._live.update(table)
            return
        for r in results:  # a line per change of state, or of what a running one does
            now = state(replace(r, elapsed_s=None))  # not a line per second
            if self._seen.get(r.worker_id) != now:
                self._seen[r.worker_id] = now
                self.console.print(Text(f"{r.worker_id}: {now}"))
