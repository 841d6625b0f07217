"""An LLM CLI from the local cache as one tar file that `apply` uploads to worker hosts.

Hosts need no npm registry: the CLI is installed here once (fleetctl/artifacts/clicache.py) and its
directory is packed as it is, deterministically (sorted names, mtime 0, owner root), so the
same version always gives the same bytes. The tar adds `bin/<command>`, a link to what the
poller runs (clicache.command): the CLI's own native binary when it ships one, so the host
needs no Node for it; otherwise its npm command, only for a CLI the registry says needs
Node (`CliPackage.node`), so the plan's check of the hosts' Node is the truth. The tar is
built for this machine's platform: npm installed the native binaries for it.

A bundle is built afresh for each apply, into a private directory that goes with the run,
and checked while it is written: every file is hashed as it goes into the tar, and the
tree must match the lock's records (fleetctl/artifacts/clilock.py) or the bundle is refused. Its
sha256, which the host checks before it unpacks anything, is the sha256 of those same
bytes, kept in memory: no bundle or `.sha256` file left in the cache is ever read back, so
replacing both proves nothing to anyone. Building costs about a second per CLI
(docs/performance.md), and only for hosts whose plan installs it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, cast

from fleetctl import layout
from fleetctl.artifacts import clicache, clilock
from fleetctl.artifacts.errors import ArtifactError
from poller.backends import CliPackage

# What older fleetctl versions kept beside the cache, and read back: never used now.
_LEGACY = ("*.tar", "*.tar.sha256", "*.tar.partial")


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256: str
    size: int


def foreign_host(host_platform: str, here: str | None = None) -> str | None:
    """Why a host cannot run this machine's bundles (their native binaries are for this
    machine's architecture), or None. `host_platform` is the agent's `linux-x86_64`."""
    here = here or os.uname().machine
    machine = host_platform.rpartition("-")[2]
    if machine == here:
        return None
    shown = machine if re.fullmatch(r"[A-Za-z0-9_]+", machine) else "another architecture"
    return (
        f"the LLM CLIs are bundled from this machine's npm install, for {here}, and the host is "
        f"{shown}: give its workers bin: (a CLI the host provides)"
    )


def bundles_dir(cache: Path) -> Path:
    return cache.with_name(cache.name + "-bundles")


def entry(cli: CliPackage, root: Path) -> str:
    """The command inside `root` (a cache directory) that the poller runs, relative."""
    return clicache.command(cli, root)


def build(
    cli: CliPackage, out_dir: Path, cache: Path | None = None, locks: Path | None = None
) -> Bundle:
    """The bundle of a pinned CLI in `out_dir`, installing the CLI into the cache first if
    needed; Tampered, and no bundle, when the cache entry differs from the lock."""
    lock = clilock.load(cli, locks)
    root = clicache.fetch(cli, cache, locks)
    tar_path = out_dir / f"{layout.cli_dir_name(cli.package, cli.version)}.tar"
    check = clilock.TreeCheck()
    try:
        command, digest = _write_tar(cli, root, tar_path, check)
    except OSError as e:
        tar_path.unlink(missing_ok=True)
        raise ArtifactError(f"cannot bundle {cli.package} from {root}: {e}") from e
    problems = check.compare(lock)
    if not check.has_file(command):
        problems.append(f"the command {command} is not a file of the lock's packages")
    if problems:
        tar_path.unlink()
        raise clilock.tampered(cli, root, lock, problems)
    return Bundle(tar_path, digest, tar_path.stat().st_size)


def _write_tar(cli: CliPackage, root: Path, out: Path, check: clilock.TreeCheck) -> tuple[str, str]:
    """The tar of the install in `root`, each entry also given to `check` as written; the
    command `bin/<command>` links to, and the sha256 of the bytes written."""
    command = entry(cli, root)
    with out.open("xb") as raw:
        sink = _Hashing(raw)
        stream = cast("IO[bytes]", sink)  # a stream ("w|") only writes
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info("bin", tarfile.DIRTYPE, 0o755))
            link = _info(f"bin/{cli.bin}", tarfile.SYMTYPE, 0o777)
            link.linkname = f"../{command}"
            tar.addfile(link)
            seen: dict[tuple[int, int], tuple[str, str]] = {}  # inode -> (first name, sha256)
            for rel, path in clilock.walk(root):
                _add(tar, path, rel, seen, check)
    return command, sink.hexdigest()


class _Hashing:
    """A write-only file that hashes what goes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._raw.write(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _Reading:
    """A file being read into the tar, hashed as it is read: the bytes checked are the
    bytes shipped."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        return data


def _add(
    tar: tarfile.TarFile,
    path: Path,
    name: str,
    seen: dict[tuple[int, int], tuple[str, str]],
    check: clilock.TreeCheck,
) -> None:
    st = path.lstat()
    inode = (st.st_dev, st.st_ino)
    if path.is_file() and not path.is_symlink() and inode in seen:  # a hard link
        info = _info(name, tarfile.LNKTYPE, 0o755 if st.st_mode & 0o111 else 0o644)
        info.linkname, digest = seen[inode]
        tar.addfile(info)
        check.add(name, "f", digest)
    elif path.is_symlink():
        info = _info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = str(path.readlink())
        tar.addfile(info)
        check.add(name, "l", info.linkname)
    elif path.is_dir():
        tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
        check.add(name, "d")
    elif path.is_file():
        info = _info(name, tarfile.REGTYPE, 0o755 if st.st_mode & 0o111 else 0o644)
        info.size = st.st_size
        with path.open("rb") as f:
            reading = _Reading(f)
            tar.addfile(info, cast("IO[bytes]", reading))
        seen[inode] = (name, reading.digest.hexdigest())
        check.add(name, "f", seen[inode][1])
    else:  # sockets, fifos, devices: npm makes none, and a host gets none
        check.problems.append(f"{name} is not a file, directory or link")


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class Bundles:
    """One bundle (or failure) per CLI for a whole run, shared by the hosts' threads, in a
    private directory removed when the run ends (`with Bundles() as bundles`)."""

    def __init__(self, cache: Path | None = None, locks: Path | None = None) -> None:
        self._cache = cache
        self._locks = locks
        self._lock = threading.Lock()
        self._done: dict[CliPackage, Bundle | ArtifactError] = {}
        self._dir: Path | None = None

    def __enter__(self) -> Bundles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _out_dir(self) -> Path:
        if self._dir is None:
            where = bundles_dir(self._cache or clicache.default_cache_dir())
            where.mkdir(parents=True, exist_ok=True)
            for pattern in _LEGACY:
                for old in where.glob(pattern):
                    old.unlink(missing_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="build-", dir=where))  # mode 0700
        return self._dir

    def get(self, cli: CliPackage) -> Bundle:
        with self._lock:  # bundles are built one after another: they are disk-bound
            if cli not in self._done:
                try:
                    self._done[cli] = build(cli, self._out_dir(), self._cache, self._locks)
                except ArtifactError as e:
                    self._done[cli] = e
            found = self._done[cli]
        if isinstance(found, ArtifactError):
            raise type(found)(str(found))
        return found
