"""A spend counter's stored value, checked: what the poller (poller/budget.py) and
`fleetctl status` accept as one.

Every worker may write the fleet's counter (it has to add to it), so what is read there is
not trusted: a value that is not a JSON object with a finite `usd` from 0 to MAX_USD (NaN,
a negative, a string, a list, a delete marker, 1e300) is *corrupt*. NaN in particular would
disable a budget silently (`NaN >= limit` is false, and NaN plus any cost stays NaN). The
poller fails closed on a corrupt counter: it treats the budget as spent and resets the
counter to its limit, marked with `reset` (what was found, by whom, when), which every
later add carries forward so `fleetctl status --check` reports it until the UTC day ends.

Pure: no bus access here, so fleetctl can read counters with the same rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# No fleet spends this much in a day (fleet.yaml caps a daily budget at $1,000,000); a larger
# value was not written by adding costs.
MAX_USD = 1e9
KV_OPERATION = "KV-Operation"
_BY = re.compile(r"worker [A-Za-z0-9_-]{1,128}")
_WHY = re.compile(r"[A-Za-z0-9 .,:;()+_'-]{1,120}")


@dataclass(frozen=True)
class Counter:
    """What a counter holds: `usd` when valid (0 for a corrupt one); `corrupt` says why it is
    not a counter; `reset` is the checked marker of a poller that had to reset it earlier
    today ({"was": why, "by": worker id}; both None: a clean counter)."""

    usd: float
    corrupt: str | None = None
    reset: Mapping[str, str] | None = None

    @property
    def problem(self) -> str | None:
        """What `fleetctl status` says after the counter's key, or None."""
        if self.corrupt is not None:
            return f"is corrupt ({self.corrupt})"
        if self.reset is not None:
            return (
                f"was reset to its limit by {self.reset['by']} after it was found corrupt "
                f"({self.reset['was']})"
            )
        return None


def parse(data: bytes | None, headers: Mapping[str, str] | None = None) -> Counter:
    """The counter in a key's last message (a key with no message is a Counter(0.0))."""
    operation = (headers or {}).get(KV_OPERATION)
    if operation in ("DEL", "PURGE"):
        return Counter(0.0, corrupt=f"deleted ({operation})")
    try:
        body = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Counter(0.0, corrupt="not JSON")
    if not isinstance(body, dict):
        return Counter(0.0, corrupt=f"a JSON {type(body).__name__}, not an object")
    usd = body.get("usd")
    problem = check_usd(usd)
    if problem is not None or not isinstance(usd, int | float):
        return Counter(0.0, corrupt=problem or "no usd")
    return Counter(float(usd), reset=_reset_of(body.get("reset")))


def check_usd(usd: Any) -> str | None:
    """Why `usd` is not a counter's value, or None. Never formats the value itself: a huge
    integer cannot even be converted to a float."""
    if usd is None:
        return "no usd"
    if isinstance(usd, bool) or not isinstance(usd, int | float):
        return f"usd is a {type(usd).__name__}, not a number"
    if isinstance(usd, float) and math.isnan(usd):
        return "usd is NaN"
    if usd < 0:
        return "usd is negative"
    if isinstance(usd, float) and math.isinf(usd):
        return "usd is infinite"
    if usd > MAX_USD:
        return f"usd is more than {MAX_USD:g}"
    return None


def reset_marker(was: str, worker_id: str) -> dict[str, str]:
    """The `reset` field a poller writes with the counter it resets."""
    return {"was": was, "by": f"worker {worker_id}"}


def _reset_of(marker: Any) -> Mapping[str, str] | None:
    """The `reset` field, checked: any worker may write it, so only a worker id and our own
    wording pass; anything else is shown as unreadable, never as it is."""
    if marker is None:
        return None
    if not isinstance(marker, dict):
        marker = {}
    was, by = marker.get("was"), marker.get("by")
    return {
        "was": was if isinstance(was, str) and _WHY.fullmatch(was) else "unreadable",
        "by": by if isinstance(by, str) and _BY.fullmatch(by) else "an unknown poller",
    }


def encode(usd: float, at: float, reset: Mapping[str, Any] | None = None) -> bytes:
    """A counter as the poller writes it."""
    value: dict[str, Any] = {"usd": round(usd, 6), "at": at}
    if reset is not None:
        value["reset"] = dict(reset)
    return json.dumps(value, allow_nan=False).encode()
