"""Code that runs on the managed hosts, shipped over SSH as text: stdlib only, no imports
from fleetctl, so a bare host with python3 is enough."""

from __future__ import annotations

from importlib.resources import files


def source(name: str) -> str:
    """The text of a host-side program (`agent` or `lock`)."""
    return files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")


# What an apply request runs, in this order.
APPLY_SOURCES = ("agent", "keeping", "steps", "previous")


def apply_program() -> str:
    """The agent with its apply steps and the kept previous version (keeping.py, steps.py,
    previous.py)."""
    return "\n".join(source(name) for name in APPLY_SOURCES)


def watchdog_program() -> str:
    """What a host runs to roll back by itself when no apply confirms it (previous.py's
    `watch`): the apply program, started with its arguments on the command line."""
    return apply_program() + "\nimport sys\nwatch_main(sys.argv)\n"


def lock_program() -> str:
    """The lock program: the agent first (the lock observes and encodes JSON with it)."""
    return source("agent") + "\n" + source("lock")
