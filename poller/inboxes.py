"""Random inbox and request ids for a nats.py connection: the poller's, and fleetctl's own
(the publisher's and the admin's). No import of nats here: fleetctl calls it on a client it
already made."""

from __future__ import annotations

import secrets
from typing import Any


class _RandomNuid:
    """nats.py's inbox and request ids, but each one random. Its own NUID keeps one random
    prefix and adds a fixed increment per id, so one inbox name of a connection (the
    monitor port lists them) predicts the next reply subjects it will use, and another
    worker could aim a reply at them (docs/security.md, "Replies aimed at another
    worker"). Same shape: 22 characters of base 62."""

    def next(self) -> bytearray:
        return bytearray(_BASE62[secrets.randbelow(len(_BASE62))] for _ in range(_NUID_LENGTH))


_BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NUID_LENGTH = 22


def unpredictable_inboxes(nc: Any) -> bool:
    """Give a connection random inbox and request ids, before it makes any of them; False
    if this nats.py has no `_nuid` to replace (tests/unit/poller/test_inboxes.py checks it)."""
    if not hasattr(nc, "_nuid"):
        return False
    nc._nuid = _RandomNuid()
    return True
