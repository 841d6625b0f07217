"""What a user JWT's NATS permissions allow, read as the server reads them: only to know
ahead what the server will refuse (a refused request is just a timeout to the client),
never to grant anything. fleetctl asks the same of the publisher's creds (its
tasks/sender.py), so the matching lives here, in the package both have."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def allowed(permission: dict[str, Any], subject: str) -> bool:
    """Does a `pub` or `sub` permission (`allow`, `deny` lists) allow `subject`? No allow
    list allows everything its deny list does not name."""
    allow, deny = list(permission.get("allow") or []), list(permission.get("deny") or [])
    return (not allow or matches(allow, subject)) and not matches(deny, subject)


def matches(patterns: Sequence[str], subject: str) -> bool:
    """Does any NATS subject pattern (`*` one token, `>` the rest) match `subject`?"""
    want = subject.split(".")
    for pattern in patterns:
        parts = str(pattern).split(".")
        for i, part in enumerate(parts):
            if part == ">" and i < len(want):
                return True
            if i >= len(want) or part not in ("*", want[i]):
                break
        else:
            if len(parts) == len(want):
                return True
    return False
