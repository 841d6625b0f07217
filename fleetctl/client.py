"""The Python API for coordinators: send tasks, wait for and read their results.

The public face of `fleetctl.tasks.client`, where it is built; scripts import it from here.
"""

from __future__ import annotations

from fleetctl.tasks.client import Client, DeadLetter, Sent, Target, TaskRow

__all__ = ["Client", "DeadLetter", "Sent", "Target", "TaskRow"]
