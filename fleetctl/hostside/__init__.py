"""Code that runs on the managed hosts, shipped over SSH as text: stdlib only, no imports
from fleetctl, so a bare host with python3 is enough."""

from __future__ import annotations

from importlib.resources import files


def source(name: str) -> str:
    """The text of a host-side program (`agent` or `lock`)."""
    return files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")


def lock_program() -> str:
    """The lock program: the agent first (the lock observes and encodes JSON with it)."""
    return source("agent") + "\n" + source("lock")
