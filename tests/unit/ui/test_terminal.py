"""What fleetctl prints reaches the terminal as text, never as control codes, while rich's own
colours still work (fleetctl/ui/terminal.py)."""

from __future__ import annotations

import io

from rich.table import Table
from rich.text import Text

from fleetctl.ui.terminal import PlainConsole, plain


def test_control_characters_are_printed_escaped_and_colours_kept() -> None:
    buf = io.StringIO()
    console = PlainConsole(file=buf, force_terminal=True, color_system="standard", width=80)
    table = Table()
    table.add_column("w1 \x1b[1A\x1b[2K")  # a header, as a worker id or title would be
    table.add_row(Text("out\x1b]52;c;eA==\x1b\\ \x9b2J \x7f\x00 ok", "red"))
    console.print(table)
    shown = buf.getvalue()
    assert "\\x1b[1A\\x1b[2K" in shown and "\\x1b]52;c;eA==\\x1b\\" in shown
    assert "\\x9b2J" in shown and "\\x7f\\x00" in shown
    assert "\x1b[31m" in shown  # rich's colour for "red" is a control code, not text
    raw = shown.replace("\x1b[31m", "").replace("\x1b[0m", "").replace("\x1b[1m", "")
    assert "\x1b" not in raw and "\x9b" not in raw


def test_plain_keeps_newlines_tabs_and_every_printable_character() -> None:
    text = "line\n\ttab é ✓ \u2028"
    assert plain(text) == text
    assert plain("\r\b\x07\x85") == "\\x0d\\x08\\x07\\x85"
