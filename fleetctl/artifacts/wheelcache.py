"""The poller's dependency wheels for each host type, downloaded once and checked at each use.

Every dependency comes from the poller's lock (`wheellock`): downloaded with
`--require-hashes` into `<cache>/deps/<host type>/<pins>_<tags>/`, where `wheels.txt` records
each file's sha256. Nothing but a download writes that directory, so whenever it is reused
every wheel is hashed again and compared with the lock: one that differs is refused, and one
that appears there without a download is never shipped. `fleetctl wheelhouse build --out`
writes the same layout elsewhere, for a control machine that cannot reach the package index
(`BROUGHT_ENV`), and that directory is checked the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from fleetctl.artifacts import pipfetch, pollerwheel, wheellock
from fleetctl.artifacts.digest import sha256_file
from fleetctl.artifacts.errors import ArtifactError, Tampered
from fleetctl.artifacts.hostpython import Target, baseline, check_python, platform_tags
from fleetctl.artifacts.wheellock import Locked

BROUGHT_ENV = "FLEETCTL_WHEELHOUSE"
"""A directory `fleetctl wheelhouse build --out` wrote elsewhere: use it, never the index."""

_MANIFEST = "wheels.txt"
_LOCKED, _BUILT = "locked", "built"  # downloaded as a locked file, or built here from one
_STALE_TMP_SECONDS = 24 * 3600
_TMP_PREFIX = ".tmp-"


def wheel_dist(path: Path) -> tuple[str, str]:
    """(canonical name, version) from a wheel file name."""
    name, version, *_ = path.name.split("-")
    return wheellock.canonical(name), version


def wheels(target: Target, cache_dir: Path) -> tuple[Path, ...]:
    """The host type's dependency wheels, pip's included: from the directory BROUGHT_ENV
    names if it is set (read, never written; the index is never asked), else from the cache,
    downloaded first if they are not there."""
    brought = os.environ.get(BROUGHT_ENV)
    if brought:
        return _brought(target, Path(brought).expanduser().absolute())
    return _cached(target, cache_dir)


def export(target: Target, out: Path) -> tuple[Path, ...]:
    """`fleetctl wheelhouse build --out`: a host type's dependency wheels, written under `out`
    in the cache's own layout with their manifest, which is what BROUGHT_ENV reads."""
    return _cached(target, out)


def _write_manifest(directory: Path, built: set[str]) -> None:
    """Record each wheel's sha256, and whether the lock has it or it was built here from a
    locked sdist (its hash then is this record's alone: nkeys publishes no wheel)."""
    lines = []
    for p in sorted(directory.glob("*.whl")):
        origin = _BUILT if wheel_dist(p)[0] in built else _LOCKED
        lines.append(f"{p.name} {sha256_file(p)} {origin}\n")
    (directory / _MANIFEST).write_text("".join(lines))


def _verified(
    directory: Path, wanted: dict[str, str], lock: dict[str, Locked]
) -> tuple[Path, ...] | None:
    """The manifest's wheels if all are there and hold the pins; None if any is missing.

    A wheel that is there but whose sha256 is not the lock's (or, for a wheel built here, the
    manifest's) is refused: nothing but a download writes this directory, so something
    changed it, and it must not reach a host.
    """
    try:
        listed = [ln.split(" ") for ln in (directory / _MANIFEST).read_text().splitlines()]
    except OSError:
        return None
    files: list[Path] = []
    for entry in listed:
        if len(entry) != 3 or entry[2] not in (_LOCKED, _BUILT):
            return None
        name, digest, origin = entry
        path = directory / name
        if not path.is_file():
            return None
        dist, version = wheel_dist(path)
        locked = lock.get(dist)
        actual = sha256_file(path)
        if locked is None or locked.version != version:
            raise ArtifactError(
                f"wheelhouse cache: {path} is not in the poller's lock "
                f"({wheellock.LOCK_FILE}); delete {directory} and run again"
            )
        expected = {digest} if origin == _BUILT else locked.hashes
        if actual not in expected:
            raise Tampered(
                f"wheelhouse cache: {path} has sha256 {actual}, not the one "
                f"{'recorded when it was built' if origin == _BUILT else 'the lock pins'}: "
                f"something changed the cache; delete {directory} and run again"
            )
        files.append(path)
    have = {wheel_dist(p) for p in files}
    if not all((wheellock.canonical(n), v) in have for n, v in wanted.items()):
        return None
    return tuple(sorted(files))


def _clean_stale(parent: Path) -> None:
    """Drop temp dirs left by a download that was killed half-way."""
    cutoff = time.time() - _STALE_TMP_SECONDS
    for entry in parent.glob(f"{_TMP_PREFIX}*"):
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _wanted() -> dict[str, str]:
    """The direct pins and pip: what every set of dependency wheels must hold."""
    lock = wheellock.poller_lock()
    if "pip" not in lock:
        raise ArtifactError(f"{wheellock.LOCK_FILE} lacks pip: run ./dev lock")
    return {**pollerwheel.pins(), "pip": lock["pip"].version}


def _deps_dir(target: Target, cache_dir: Path) -> Path:
    """Where the dependency wheels for this host type and these pins live under a cache."""
    tags = platform_tags(target)
    request = hashlib.sha256("\0".join((target.python, *tags)).encode()).hexdigest()[:8]
    label = "_".join(f"{n}-{v}" for n, v in _wanted().items())
    return cache_dir / "deps" / target.key / f"{label}_{request}"


def _cached(target: Target, cache_dir: Path) -> tuple[Path, ...]:
    """The locked dependency closure plus pip, downloaded once per host type and lock."""
    lock = wheellock.poller_lock()
    pins = pollerwheel.pins()
    wanted = _wanted()
    tags = platform_tags(target)
    final = _deps_dir(target, cache_dir)
    parent = final.parent
    found = _verified(final, wanted, lock)
    if found is not None:
        return found
    check_python(target, pollerwheel.requires_python())
    parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(parent)
    work = Path(tempfile.mkdtemp(dir=parent, prefix=_TMP_PREFIX))
    try:
        out = work / "wheels"
        # Some pins publish only an sdist (nkeys does): wheel the direct pins here first
        # (pip checks the sdist against the lock), then let the platform-bound download take
        # those files and the rest of the lock.
        direct = pipfetch.requirements(work / "direct.txt", [lock[n].requirement() for n in pins])
        pipfetch.run(
            target,
            "wheel",
            "--no-deps",
            "--require-hashes",
            *pipfetch.no_isolation(),
            "-w",
            str(work / "local"),
            "-r",
            str(direct),
        )
        local = {wheel_dist(w)[0]: w for w in (work / "local").glob("*-none-any.whl")}
        built = {n for n, w in local.items() if sha256_file(w) not in lock[n].hashes}
        lines = [
            f"{local[n]} --hash=sha256:{sha256_file(local[n])}" if n in local else e.requirement()
            for n, e in sorted(lock.items())
        ]
        everything = pipfetch.requirements(work / "download.txt", lines)
        pipfetch.run(
            target,
            "download",
            *pipfetch.target_options(target, tags),
            "--require-hashes",
            "-d",
            str(out),
            "-r",
            str(everything),
        )
        _write_manifest(out, built)
        if _verified(out, wanted, lock) is None:
            raise ArtifactError(
                f"pip download for {target.key} finished without all of "
                f"{', '.join(wanted)}: check the pip configuration (PIP_* variables, pip.conf)"
            )
        if _verified(final, wanted, lock) is None:  # else a concurrent build just finished it
            if final.exists():  # an incomplete leftover: complete ones are never touched
                shutil.rmtree(final)
            try:
                out.rename(final)
            except OSError:
                if _verified(final, wanted, lock) is None:  # lost a race to a concurrent build
                    raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    done = _verified(final, wanted, lock)
    assert done is not None
    return done


def _brought(target: Target, directory: Path) -> tuple[Path, ...]:
    """The dependency wheels from a brought-along directory, checked like the cache's.

    A glibc host takes a set built for its exact type or the baseline for its Python and
    platform (those wheels load on every glibc >= 2.17).
    """
    lock, wanted = wheellock.poller_lock(), _wanted()
    candidates = [target]
    if target.libc == "-" or target.libc.startswith("glibc-"):
        candidates.append(baseline(target.python, target.platform))
    for candidate in candidates:
        found = _verified(_deps_dir(candidate, directory), wanted, lock)
        if found is not None:
            return found
    raise ArtifactError(
        f"{directory} ({BROUGHT_ENV}) has no wheels for Python {target.python} on "
        f"{target.platform} ({target.libc}) with this fleetctl's poller lock: on a machine "
        f"that reaches the package index, run `fleetctl wheelhouse build --out DIR "
        f"--python {target.python} --platform {target.platform}` with this fleetctl version "
        "and bring DIR along"
    )
