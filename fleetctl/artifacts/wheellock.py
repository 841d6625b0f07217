"""The poller's lock: every distribution hosts install, pinned with the sha256 of its files.

`poller-lock.txt` (beside this module, so it ships in fleetctl's own wheel) is written by
`./dev lock` (`uv pip compile --generate-hashes`); nothing else edits it. The wheelhouse
downloads against it with `--require-hashes` and checks its cache against it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from fleetctl.artifacts.errors import ArtifactError

LOCK_FILE = Path(__file__).with_name("poller-lock.txt")

_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Locked:
    """One pinned distribution: the version, its files' sha256s (wheels and sdist), a marker."""

    name: str  # canonical
    version: str
    hashes: frozenset[str]
    marker: str | None = None

    def requirement(self) -> str:
        """A `--require-hashes` requirement line for pip."""
        marker = f" ; {self.marker}" if self.marker else ""
        hashes = " ".join(f"--hash=sha256:{h}" for h in sorted(self.hashes))
        return f"{self.name}=={self.version}{marker} {hashes}"


def canonical(name: str) -> str:
    """A distribution name as the lock and wheel files compare it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text: str, source: str = "poller-lock.txt") -> dict[str, Locked]:
    """`name==version [; marker] \\` lines, each followed by its `--hash=sha256:` lines."""
    found: dict[str, Locked] = {}
    current: tuple[str, str, str | None] | None = None
    hashes: set[str] = set()

    def close() -> None:
        if current is not None:
            name, version, marker = current
            if not hashes:
                raise ArtifactError(f"{source}: {name}=={version} has no --hash: run ./dev lock")
            found[name] = Locked(name, version, frozenset(hashes), marker)

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            digest = _HASH.match(line)
            if current is None or digest is None:
                raise ArtifactError(f"{source}:{number}: unexpected {line[:80]!r}: run ./dev lock")
            hashes.add(digest.group(1))
            continue
        pin = _PIN.fullmatch(line)
        if pin is None:
            raise ArtifactError(f"{source}:{number}: not a pinned requirement: {line[:80]!r}")
        close()
        current, hashes = (canonical(pin.group(1)), pin.group(2), pin.group(3)), set()
    close()
    return found


@functools.cache
def poller_lock() -> dict[str, Locked]:
    """The shipped lock, read once per process."""
    try:
        text = LOCK_FILE.read_text()
    except OSError as e:
        raise ArtifactError(f"cannot read {LOCK_FILE} ({e.strerror}): reinstall fleetctl") from None
    return parse(text, str(LOCK_FILE))
