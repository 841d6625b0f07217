"""The one place that owns the terminal: data on stdout, diagnostics on stderr.

Colour only on a TTY (rich decides, and honours NO_COLOR); never wrap lines, so output
piped into a file or a PR comment stays exactly as printed.

Much of what fleetctl prints comes from the bus, written by whoever holds a worker's creds:
a result's output and fields, a dead letter's reason, a heartbeat's version. So no text
reaches the terminal as a control code: every character a terminal would act on instead of
showing is printed escaped (`\\x1b`), whichever view printed it (docs/security.md, "A
compromised agent"). rich's own codes (colours, the live table's cursor moves) are not text.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from functools import cache

from rich.console import Console
from rich.segment import Segment

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: U+009B is a
# one-byte CSI to many terminals).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    """`text` with every control character written as `\\xNN`."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class PlainConsole(Console):
    """A rich Console that prints text only as text (see the module's docstring)."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            s if s.control else Segment(plain(s.text), s.style, s.control) for s in buffer
        )


@cache
def out() -> Console:
    # Tables do not soft-wrap: give them room when the output is a pipe or a file.
    width = None if sys.stdout.isatty() else 200
    return PlainConsole(highlight=False, soft_wrap=True, width=width)


@cache
def err() -> Console:
    return PlainConsole(stderr=True, highlight=False, soft_wrap=True)
