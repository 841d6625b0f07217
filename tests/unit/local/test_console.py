"""The local fleet's console lines: exact text without colour, exact codes with it, and
nothing a worker says ever reaching the terminal as a control code."""

from __future__ import annotations

import io
import json

from fleetctl.local.console import Console, wants_colour

FAILED = json.dumps(
    {
        "ts": 1.0,
        "level": "warning",
        "event": "task_done",
        "worker_id": "w1",
        "status": "failed",
        "reason": "exited with code 3: \x1b]0;pwned\x07 \x9b2J",
    }
)
STARTED = json.dumps({"ts": 1.0, "level": "info", "event": "starting", "worker_id": "w1"})


def test_without_colour_a_line_is_the_prefix_the_level_and_the_event_escaped() -> None:
    console = Console(io.StringIO(), colour=False)
    assert console.format("w1", STARTED) == "w1           | info starting"
    assert console.format("w1", FAILED) == (
        "w1           | warning task_done status=failed "
        "reason=exited with code 3: \\x1b]0;pwned\\x07 \\x9b2J"
    )
    assert console.format("w1", "Traceback \x1b[31m") == "w1           | Traceback \\x1b[31m"


def test_with_colour_each_worker_has_its_own_and_a_failure_is_highlighted() -> None:
    console = Console(io.StringIO(), colour=True)
    assert (
        console.format("w1", STARTED)
        == "\x1b[36mw1          \x1b[0m | \x1b[32minfo\x1b[0m starting"
    )
    assert console.format("w2", STARTED).startswith("\x1b[35mw2          \x1b[0m | ")
    assert console.format("w1", FAILED) == (
        "\x1b[36mw1          \x1b[0m | \x1b[1;33mwarning\x1b[0m \x1b[33mtask_done status=failed "
        "reason=exited with code 3: \\x1b]0;pwned\\x07 \\x9b2J\x1b[0m"
    )
    loop = console.format("w1", "supervisor: crash loop: exited 3 times in 60 s")
    red = "\x1b[31msupervisor: crash loop: exited 3 times in 60 s\x1b[0m"
    assert loop == f"\x1b[36mw1          \x1b[0m | {red}"


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_colour(Tty(), {"TERM": "xterm"})
    assert not wants_colour(Tty(), {"NO_COLOR": "1"})
    assert not wants_colour(Tty(), {"TERM": "dumb"})
    assert not wants_colour(io.StringIO(), {})
