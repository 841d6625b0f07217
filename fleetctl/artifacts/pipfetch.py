"""pip, run on this machine to fetch wheels for a host: resolved for the host's interpreter
and platform, not this one's, and a failure boiled down to one line a human can act on.

pip's own output is long and mostly noise; what the operator needs is which of a handful of
causes it was (no network, no wheel for that host, no pip here, an sdist that does not
build) and what to do about it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target

_DOWNLOAD_TIMEOUT = 900.0
_NETWORK_HINTS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "SSLError",
    "No route to host",
)


def run(target: Target, *args: str) -> None:
    """`python -m pip <args>` with this machine's Python; its failure as an ArtifactError."""
    cmd = [sys.executable, "-m", "pip", args[0], "--disable-pip-version-check", "--no-input"]
    try:
        done = subprocess.run(
            [*cmd, *args[1:]],
            capture_output=True,
            text=True,
            timeout=_DOWNLOAD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ArtifactError(
            f"pip {args[0]} timed out after {_DOWNLOAD_TIMEOUT:.0f}s: check network access to "
            "PyPI or your mirror (PIP_INDEX_URL)"
        ) from None
    if done.returncode != 0:
        raise ArtifactError(failure(args[0], done.stderr + done.stdout, target))


def failure(command: str, output: str, target: Target) -> str:
    """Boil pip's output down to one line a human can act on."""
    errors = [ln.strip() for ln in output.splitlines() if ln.strip().startswith("ERROR:")]
    detail = (errors[0] if errors else (output.strip().splitlines() or ["no output"])[-1])[:300]
    failed = f"pip {command} failed"
    if "No module named pip" in output:
        return (
            f"{failed}: pip is not installed in fleetctl's Python ({sys.executable}); "
            "install it with `python -m ensurepip`"
        )
    if any(hint in output for hint in _NETWORK_HINTS):
        return (
            f"{failed}: cannot reach the package index ({detail}); fleetctl needs network "
            "access to PyPI or a mirror (PIP_INDEX_URL) once per host type and dependency set"
        )
    if command == "download" and (
        "Could not find a version" in output
        or "No matching distribution" in output
        or "is not a supported wheel" in output
    ):
        return (
            f"{failed}: no wheel for Python {target.python} on {target.platform} "
            f"({target.libc}) ({detail}); the poller's dependencies don't support that host"
        )
    if command == "wheel" and "Could not find a version" in output:
        return (
            f"{failed}: a pinned dependency is not on the package index ({detail}); "
            "check PIP_INDEX_URL / pip.conf"
        )
    if "Failed building wheel" in output or "Failed to build" in output:
        return f"{failed}: cannot build a wheel from a dependency's sdist ({detail})"
    return f"{failed} for {target.key}: {detail}"


def target_options(target: Target, tags: Iterable[str]) -> list[str]:
    """Resolve for the host's interpreter, not ours: binary wheels only, its tags only."""
    options = ["--only-binary=:all:", "--python-version", target.python, "--implementation", "cp"]
    for tag in tags:
        options += ["--platform", tag]
    return options


def no_isolation() -> list[str]:
    """Build nkeys' sdist with the locked setuptools when fleetctl's Python has it: pip's
    isolated build would fetch setuptools without checking any hash."""
    return ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []


def requirements(path: Path, lines: Iterable[str]) -> Path:
    """A requirements file for `pip -r`, one line each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path
