"""The poller's own wheel, zipped here from its sources: no build backend, no network.

Hosts install the poller from this wheel (fleetctl/artifacts/wheelhouse.py ships it with the
dependency wheels). Its version is fleetctl's plus a hash of the sources and of the whole
poller lock, so any change to what hosts would run yields a new install there, and a change
to fleetctl alone restarts no worker; the same input always gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import poller
from fleetctl.artifacts import wheellock
from fleetctl.artifacts.errors import ArtifactError

DIST_NAME = poller.DIST_NAME  # the name the poller looks itself up by
"""The poller's distribution name on the host (`pip show fleet-poller`)."""

ENTRY_POINT = "fleet-poller = poller.__main__:main"
"""The console script systemd units run."""

DEPENDENCIES = ("nats-py", "nkeys")
"""What the poller imports besides the stdlib, at the versions poller-lock.txt pins."""

_WHEEL_NAME = DIST_NAME.replace("-", "_")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: byte-reproducible wheels
_TMP_PREFIX = ".tmp-"


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


def pins() -> dict[str, str]:
    """The poller's direct dependencies at the versions the lock pins."""
    lock = wheellock.poller_lock()
    missing = [name for name in DEPENDENCIES if name not in lock]
    if missing:
        raise ArtifactError(f"{wheellock.LOCK_FILE} lacks {', '.join(missing)}: run ./dev lock")
    return {name: lock[name].version for name in DEPENDENCIES}


def requires_python() -> str | None:
    """The Python versions the poller runs on: fleetctl's own `Requires-Python`."""
    try:
        found = importlib.metadata.metadata("fleetctl")["Requires-Python"]
    except (importlib.metadata.PackageNotFoundError, KeyError):
        return None
    return str(found) if found else None


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
    for name, version in sorted(pins().items()):
        digest.update(b"D\0%s==%s\0" % (name.encode(), version.encode()))
    for name, locked in sorted(wheellock.poller_lock().items()):  # the whole closure, hashes too
        hashes = ",".join(sorted(locked.hashes))
        digest.update(
            b"L\0%s==%s\0%s\0" % (name.encode(), locked.version.encode(), hashes.encode())
        )
    return f"{_fleetctl_version()}+{digest.hexdigest()[:12]}"


def _record_hash(data: bytes) -> str:
    raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={raw.decode()}"


def _metadata(version: str, pinned: dict[str, str]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {DIST_NAME}",
        f"Version: {version}",
        "Summary: fleetctl's worker runtime, built by fleetctl for offline install",
    ]
    python = requires_python()
    if python:
        lines.append(f"Requires-Python: {python}")
    lines += [f"Requires-Dist: {name}=={v}" for name, v in sorted(pinned.items())]
    return "\n".join(lines) + "\n"


def _wheel_entries(version: str) -> Iterator[tuple[str, bytes]]:
    """(archive name, bytes) in archive order, RECORD last as the wheel spec recommends."""
    info = f"{_WHEEL_NAME}-{version}.dist-info"
    record: list[str] = []
    entries = [(rel, path.read_bytes()) for rel, path in _poller_files(_poller_dir())]
    entries += [
        (f"{info}/METADATA", _metadata(version, pins()).encode()),
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
