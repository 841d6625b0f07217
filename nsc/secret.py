"""Secrets (NKey seeds, .creds contents) in a wrapper whose repr/str never shows them.

A seed that reaches a log line, a traceback or a `print(obj)` is a leaked identity; keeping
it in `Secret` means the only way to see the bytes is the explicit `reveal()`.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

_MASK = "Secret(****)"


class Secret:
    """Immutable secret bytes; `reveal()` is the one way out."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | str) -> None:
        if isinstance(value, str):
            value = value.encode()
        object.__setattr__(self, "_value", bytes(value))

    def reveal(self) -> bytes:
        value: bytes = object.__getattribute__(self, "_value")
        return value

    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal(), other.reveal())

    def __hash__(self) -> int:
        return hash(("Secret", self.reveal()))

    def __len__(self) -> int:
        return len(self.reveal())

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not picklable: write it with nsc.fsutil instead")
