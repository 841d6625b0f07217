"""Option values parsed the same way by every command that takes them."""

from __future__ import annotations

from fleetctl.cli.context import fail
from fleetctl.config.errors import BadValue
from fleetctl.config.values import parse_duration


def duration(value: str | None, option: str) -> float | None:
    """A duration option (`10m`, `2h`, `90s`) in seconds; None when not given. A bad or
    zero one ends the command with what is wrong and how to write it."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except BadValue as e:
        fail(f"{option} {e.what}", e.fix)
    if seconds <= 0:
        fail(f"{option} must be longer than 0s")
    return float(seconds)
