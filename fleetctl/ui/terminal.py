"""The one place that owns the terminal: data on stdout, diagnostics on stderr.

Colour only on a TTY (rich decides, and honours NO_COLOR); never wrap lines, so output
piped into a file or a PR comment stays exactly as printed.
"""

from __future__ import annotations

from functools import cache

from rich.console import Console


@cache
def out() -> Console:
    return Console(highlight=False, soft_wrap=True)


@cache
def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
