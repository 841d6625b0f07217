"""The worker runtime: pull a task from JetStream, run the LLM CLI, publish the result."""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

RELEASE = "0.1.0"
DIST_NAME = "fleet-poller"  # the wheel fleetctl builds (fleetctl/artifacts/wheelhouse.py)


@cache
def _version() -> str:
    """The installed wheel's version, `0.1.0+<build hash>` exactly as the plan shows it, so
    every result and heartbeat says which build produced it; in a source checkout, where no
    wheel is installed (or another copy is), the release alone."""
    try:
        dist = metadata.distribution(DIST_NAME)
    except metadata.PackageNotFoundError:
        return RELEASE
    if Path(str(dist.locate_file("poller/__init__.py"))).resolve() != Path(__file__).resolve():
        return RELEASE
    return dist.version


def __getattr__(name: str) -> str:
    # Looked up on first use, not at import: fleetctl imports poller.backends on every command.
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
