"""The one place that owns the terminal: data on stdout, diagnostics on stderr.

Colour only on a TTY (rich decides, and honours NO_COLOR); never wrap lines, so output
piped into a file or a PR comment stays exactly as printed.
"""

from __future__ import annotations

import sys
from functools import cache

from rich.console import Console


@cache
def out() -> Console:
    # Tables do not soft-wrap: give them room when the output is a pipe or a file.
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, width=width)


@cache
def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
