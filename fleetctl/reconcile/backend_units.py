"""What a worker's unit carries for its backend, read from the backend registry.

The registry (poller/backends.py) names, per backend, the worker fields it uses and the
variable each one is rendered into; the poller reads the same variables back.
"""

from __future__ import annotations

from fleetctl.config.model import Worker
from poller.backends import BACKENDS


def unit_environment(worker: Worker) -> list[tuple[str, str]]:
    """The backend's Environment= lines, in registry order (unset fields have none)."""
    out = []
    for setting in BACKENDS[worker.backend].settings:
        value = setting.render(getattr(worker, setting.field))
        if value is not None:
            out.append((setting.env, value))
    return out


def unit_template(worker: Worker) -> str:
    return BACKENDS[worker.backend].template
