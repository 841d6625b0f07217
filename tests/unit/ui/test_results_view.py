"""Why a target did not complete, wherever a result is shown: the reason under `error`, wrapped
rather than cut at 80 columns, and the end of the CLI's stderr, escaped and bounded."""

from __future__ import annotations

import io

from fleetctl.tasks.messages import STDERR_SHOWN, Result
from fleetctl.ui.results_view import STDERR_LINES, side_by_side
from fleetctl.ui.terminal import PlainConsole

REASON = "exited with code 3: boom: something broke while reading the configuration file"


def _shown(results: list[Result], width: int = 80, full: bool = False) -> str:
    buf = io.StringIO()
    console = PlainConsole(file=buf, width=width, highlight=False, soft_wrap=True)
    side_by_side(console, "t-1", results, full=full)
    return buf.getvalue()


def _failed(stderr: str, worker: str = "w1") -> Result:
    return Result(worker, "failed", {"exit_code": 3, "error": REASON, "stderr_tail": stderr})


def test_a_failure_shows_its_reason_whole_and_its_stderr_at_80_columns() -> None:
    for many in (1, 3):  # one column in a table; three stacked panels
        shown = _shown([_failed("boom: something broke\n", f"w{i}") for i in range(many)])
        assert all(len(line) <= 80 for line in shown.splitlines())
        text = " ".join(line.strip("│ ") for line in shown.splitlines())
        assert "error     exited with code 3: boom: something broke" in shown
        assert " ".join(REASON.split()) in " ".join(text.split())  # wrapped, not cut
        assert text.count("stderr:") == many
        assert text.count("boom: something broke") >= 2 * many


def test_stderr_shows_its_last_lines_and_all_of_it_with_full_escaped() -> None:
    lines = [f"line {i}" for i in range(12)] + ["\x1b[2Jcleared?"]
    r = _failed("\n".join(lines) + "\n")
    short = _shown([r])
    assert f"stderr, last {STDERR_LINES} of 13 lines (--full shows them):" in short
    assert "line 7" not in short and "line 8" in short
    assert "\\x1b[2Jcleared?" in short and "\x1b" not in short
    full = _shown([r], full=True)
    assert "line 0" in full and "line 11" in full


def test_json_carries_the_reason_and_a_bounded_stderr_tail() -> None:
    r = _failed("x" * (STDERR_SHOWN * 3))
    body = r.as_json()
    assert body["error"] == REASON
    assert len(body["stderr_tail"]) == STDERR_SHOWN
    # an older poller's result without `error`: the exit code still says why
    old = Result("w1", "failed", {"exit_code": 3, "stderr_tail": ""})
    assert old.as_json()["error"] == "exited with code 3"
    assert Result("w1", "timeout", {}).reason == "timed out: stopped at its time limit"
    ok = Result("w1", "completed", {"exit_code": 0, "stderr_tail": "warn"})
    assert ok.as_json()["error"] is None and "stderr" not in _shown([ok])
