"""Files the way secrets need them: private directories (0700), files written atomically.

Atomic = write a temporary file in the same directory with the final mode already set, then
rename over the target, so a reader (nats-server, a worker, nsc) never sees half a file and
a secret is never briefly world-readable.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

from nsc.secret import Secret

DIR_MODE = 0o700
SECRET_MODE = 0o600
PUBLIC_MODE = 0o600  # JWTs are not secret, but nsc writes everything 0600 and so do we
_counter = itertools.count()


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
    """Replace `path` with `data` in one rename; `durable` also fsyncs file and directory.

    Plain string paths inside: issuing a thousand users is three thousand of these.
    """
    payload = data.reveal() if isinstance(data, Secret) else data
    raw = payload.encode() if isinstance(payload, str) else payload
    target = os.fspath(path)
    parent, name = os.path.split(target)
    try:
        fd, tmp = _create_temp(parent, name)
    except FileNotFoundError:
        ensure_dir(Path(parent))
        fd, tmp = _create_temp(parent, name)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask; this is not
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)  # noqa: PTH105 - str paths: this is the hot path
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # noqa: PTH108
        raise
    if durable:
        fsync_dir(Path(parent))
    return path


def _create_temp(parent: str, name: str) -> tuple[int, str]:
    """A new file next to the target, created exclusively 0600 (cheaper than mkstemp)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        tmp = os.path.join(parent, f".{name}.{os.getpid()}.{next(_counter)}.tmp")  # noqa: PTH118
        try:
            return os.open(tmp, flags, SECRET_MODE), tmp
        except FileExistsError:
            continue


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
