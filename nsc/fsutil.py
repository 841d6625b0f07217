"""Files the way secrets need them: private directories (0700), files written atomically.

Atomic = write a temporary file in the same directory with the final mode already set, then
rename over the target, so a reader (nats-server, a worker, nsc) never sees half a file and
a secret is never briefly world-readable.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from nsc.secret import Secret

DIR_MODE = 0o700
SECRET_MODE = 0o600
PUBLIC_MODE = 0o600  # JWTs are not secret, but nsc writes everything 0600 and so do we
_counter = itertools.count()
LOCK_FILE = ".fleetctl.lock"
# Locks this process holds, by directory: flock conflicts between two descriptors of one
# process too, so a nested `locked()` must reuse the descriptor rather than open another.
_held: dict[str, tuple[int, int]] = {}
_held_guard = threading.Lock()
_thread_locks: dict[str, threading.RLock] = {}


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
    path: Path,
    data: bytes | str | Secret,
    mode: int = SECRET_MODE,
    *,
    durable: bool = False,
    exclusive: bool = False,
) -> Path:
    """Replace `path` with `data` in one rename; `durable` also fsyncs file and directory;
    `exclusive` refuses (FileExistsError) to replace an existing file, atomically (link).

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
        if exclusive:
            os.link(tmp, target)  # fails if the target exists, even if it appeared just now
            os.unlink(tmp)  # noqa: PTH108
        else:
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


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (flock of its LOCK_FILE) for the block, so that
    read-modify-write of the files in it (a revocation, the metadata) by two processes or two
    threads cannot lose one of the changes. Reentrant; released when the process dies."""
    key = os.fspath(directory)
    with _held_guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    with thread_lock:
        fd, depth = _held.get(key, (-1, 0))
        if depth == 0:
            ensure_dir(directory)
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(os.path.join(key, LOCK_FILE), flags, SECRET_MODE)  # noqa: PTH118
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            if depth == 0:
                del _held[key]
                os.close(fd)  # releases the flock
            else:
                _held[key] = (fd, depth)
