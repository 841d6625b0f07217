"""Files the way secrets need them: private directories (0700), files written atomically.

Atomic = write a temporary file in the same directory with the final mode already set, then
rename over the target, so a reader (nats-server, a worker, nsc) never sees half a file and
a secret is never briefly world-readable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from nsc.secret import Secret

DIR_MODE = 0o700
SECRET_MODE = 0o600
PUBLIC_MODE = 0o600  # JWTs are not secret, but nsc writes everything 0600 and so do we


def ensure_dir(path: Path) -> Path:
    """Create `path` and every missing parent 0700 (umask notwithstanding).

    An existing directory is left as it is: it may be a shared parent like /tmp or $HOME.
    """
    if path.is_dir():
        return path
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created concurrently; leave its mode to whoever made it
        d.chmod(DIR_MODE)
    return path


def atomic_write(
    path: Path, data: bytes | str | Secret, mode: int = SECRET_MODE, *, durable: bool = False
) -> Path:
    """Replace `path` with `data` in one rename; `durable` also fsyncs file and directory."""
    payload = data.reveal() if isinstance(data, Secret) else data
    raw = payload.encode() if isinstance(payload, str) else payload
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
