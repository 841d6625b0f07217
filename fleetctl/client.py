"""The Python API for coordinators: send tasks, wait for and read their results.

The public face of `fleetctl.tasks.client`, where it is built; scripts import it from here.
"""

from __future__ import annotations

from fleetctl.tasks.client import (
    Change,
    ChangeError,
    Client,
    Code,
    CodeError,
    DeadLetter,
    Sent,
    Target,
    TaskRow,
)

__all__ = [
    "Change",
    "ChangeError",
    "Client",
    "Code",
    "CodeError",
    "DeadLetter",
    "Sent",
    "Target",
    "TaskRow",
]
