"""The poller's offline install set for one host type: its own wheel, every dependency's
wheel, and a pip wheel, in one directory with the files that carry their hashes.

Hosts have no registry access, so fleetctl ships the complete dependency closure. The host
installs it into a fresh venv with the pip wheel itself (`python WHEEL/pip install --no-index
--no-deps --require-hashes -r requirements.txt`), which is why pip is part of the set.

The poller's wheel comes from `pollerwheel`, the dependency wheels from `wheelcache`
(checked against the poller's lock); this puts them together with a `requirements.txt` and
`SHA256SUMS` that carry each file's sha256, the poller's own wheel included, once per host
type for a whole run (`Builds`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from fleetctl.artifacts import pollerwheel, wheelcache
from fleetctl.artifacts.digest import sha256_file
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target

REQUIREMENTS = "requirements.txt"
"""In a wheelhouse: what the host installs, one `name==version --hash=sha256:...` line each."""

SUMS = "SHA256SUMS"
"""In a wheelhouse: `sha256sum` lines for every wheel; the host checks the pip wheel by it."""

_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Wheelhouse:
    """One directory holding everything a host needs to install this poller version."""

    path: Path
    version: str
    files: tuple[Path, ...]  # every .whl, pip's included

    @property
    def contents(self) -> tuple[Path, ...]:
        """What a host gets: the wheels and the two files that carry their hashes."""
        return (*self.files, self.path / REQUIREMENTS, self.path / SUMS)


def default_cache_dir() -> Path:
    """Per the XDG spec: a relative XDG_CACHE_HOME is ignored."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "fleetctl" / "wheelhouse"


def _place(src: Path, dest_dir: Path) -> Path:
    """Hardlink (cheap: many versions share one download), copy where links are refused."""
    dest = dest_dir / src.name
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
    return dest


def _write_hashes(directory: Path, poller: Path) -> None:
    """requirements.txt (what the host installs, pip excepted) and SHA256SUMS (every wheel)."""
    wheels = sorted(directory.glob("*.whl"))
    sums = {w: sha256_file(w) for w in wheels}
    lines = []
    for wheel in wheels:
        name, version = wheelcache.wheel_dist(wheel)
        if name != "pip":
            lines.append(f"{name}=={version} --hash=sha256:{sums[wheel]}\n")
    (directory / REQUIREMENTS).write_text("".join(lines))
    (directory / SUMS).write_text("".join(f"{sums[w]}  {w.name}\n" for w in wheels))
    assert poller in sums


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in directory.iterdir() if p.is_file()}


def build(target: Target, cache_dir: Path | None = None) -> Wheelhouse:
    """Assemble the wheelhouse for one host type; only the first call per target needs network.

    With FLEETCTL_WHEELHOUSE set, the dependency wheels come from that directory only (it is
    read, never written) and the package index is never asked. The poller wheel is rebuilt
    every time; an existing directory with identical content is kept (another fleetctl may
    be shipping it right now), anything else is swapped out.
    """
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    deps = wheelcache.wheels(target, cache)
    version = pollerwheel.poller_version()
    parent = cache / "builds" / version
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / target.key
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_TMP_PREFIX))
    try:
        for wheel in deps:
            _place(wheel, tmp)
        _write_hashes(tmp, pollerwheel.build_poller_wheel(tmp))
        fresh = _digests(tmp)
        if not (final.is_dir() and _digests(final) == fresh):
            if final.exists():
                old = Path(tempfile.mkdtemp(dir=parent, prefix=_TMP_PREFIX))
                final.rename(old / "old")
                shutil.rmtree(old, ignore_errors=True)
            try:
                tmp.rename(final)
            except OSError:
                if not (final.is_dir() and _digests(final) == fresh):  # lost a race to a twin?
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = tuple(sorted(final.glob("*.whl")))
    return Wheelhouse(path=final, version=version, files=files)


class Builds:
    """One build per host type for a whole run, shared by the threads that visit the hosts.

    Hosts are applied in parallel; those with the same Python and platform wait for the one
    build, and a failure is remembered too: every host that needs that wheelhouse fails at
    once with the same message instead of trying (and timing out on the index) again.
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, Wheelhouse | ArtifactError] = {}

    def get(self, target: Target) -> Wheelhouse:
        with self._guard:
            lock = self._locks.setdefault(target.key, threading.Lock())
        with lock:  # other targets build meanwhile
            if target.key not in self._done:
                try:
                    self._done[target.key] = build(target, self._cache_dir)
                except ArtifactError as e:
                    self._done[target.key] = e
            found = self._done[target.key]
        if isinstance(found, ArtifactError):
            raise type(found)(str(found))
        return found
