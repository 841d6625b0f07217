"""An LLM CLI from the local cache as one tar file that `apply` uploads to worker hosts.

Hosts need no npm registry: the CLI is installed here once (fleetctl/clicache.py) and its
directory is packed as it is, deterministically (sorted names, mtime 0, owner root), so the
same version always gives the same bytes and sha256, and the tar is kept beside the cache
for the next run. The tar adds `bin/<command>`, a link to what the poller runs: the CLI's
own native binary when its npm launcher is a Node script that only starts one (Codex), so
the host needs no Node for it; otherwise its npm command. A Node script is accepted only
when the registry says the CLI needs Node (`CliPackage.node`), so the plan's check of the
hosts' Node is the truth. The tar is built for this machine's platform: npm installed the
native binaries for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

from fleetctl import clicache, layout
from poller.backends import CliPackage

_ELF = b"\x7fELF"
# Where npm packages put the native binaries their launchers start (Codex's layout).
_NATIVE_GLOBS = ("*/*/vendor/*/bin/{}", "*/vendor/*/bin/{}")


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
    launcher = (root / "node_modules" / ".bin" / cli.bin).resolve()
    if not launcher.is_relative_to(root.resolve()):
        raise clicache.CliInstallError(f"{cli.package}'s {cli.bin} points outside its install")
    if _is_elf(launcher):
        return str(launcher.relative_to(root.resolve()))
    modules = root / "node_modules"
    for pattern in _NATIVE_GLOBS:
        natives = sorted(p for p in modules.glob(pattern.format(cli.bin)) if _is_elf(p))
        if natives:
            return str(natives[0].relative_to(root))
    if cli.node is None:
        raise clicache.CliInstallError(
            f"{cli.package} {cli.version}: {cli.bin} is a script with no native binary "
            "beside it, but the backend registry says it needs no Node.js: set its `node`"
        )
    return str(launcher.relative_to(root.resolve()))


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == _ELF
    except OSError:
        return False


def build(cli: CliPackage, cache: Path | None = None) -> Bundle:
    """The bundle of a pinned CLI, installing the CLI into the cache first if needed."""
    cache = cache or clicache.default_cache_dir()
    clicache.install(cli, cache)
    root = clicache.package_dir(cli, cache)
    out_dir = bundles_dir(cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = layout.cli_dir_name(cli.package, cli.version)
    tar_path, sum_path = out_dir / f"{name}.tar", out_dir / f"{name}.tar.sha256"
    with (out_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tar_path.exists() and sum_path.exists()):
            partial = tar_path.with_name(tar_path.name + ".partial")
            digest = _write_tar(cli, root, partial)
            partial.rename(tar_path)
            sum_path.write_text(digest + "\n")
    return Bundle(tar_path, sum_path.read_text().strip(), tar_path.stat().st_size)


def _write_tar(cli: CliPackage, root: Path, out: Path) -> str:
    command = entry(cli, root)
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("bin", tarfile.DIRTYPE, 0o755))
        link = _info(f"bin/{cli.bin}", tarfile.SYMTYPE, 0o777)
        link.linkname = f"../{command}"
        tar.addfile(link)
        seen: dict[tuple[int, int], str] = {}  # (device, inode) -> first name: hard links
        for path in _walk(root / "node_modules"):
            _add(tar, path, str(path.relative_to(root)), seen)
    digest = hashlib.sha256()
    with out.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(top: Path) -> list[Path]:
    """Every path under `top` (itself first), sorted, without following links."""
    out = [top]
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        base = Path(dirpath)
        out += [base / n for n in sorted([*dirnames, *filenames])]
    return sorted(out)


def _add(tar: tarfile.TarFile, path: Path, name: str, seen: dict[tuple[int, int], str]) -> None:
    st = path.lstat()
    inode = (st.st_dev, st.st_ino)
    if path.is_file() and not path.is_symlink() and inode in seen:  # Claude Code has one
        info = _info(name, tarfile.LNKTYPE, 0o755 if st.st_mode & 0o111 else 0o644)
        info.linkname = seen[inode]
        tar.addfile(info)
    elif path.is_symlink():
        info = _info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = str(path.readlink())
        tar.addfile(info)
    elif path.is_dir():
        tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
    elif path.is_file():
        info = _info(name, tarfile.REGTYPE, 0o755 if st.st_mode & 0o111 else 0o644)
        info.size = st.st_size
        with path.open("rb") as f:
            tar.addfile(info, f)
        seen[inode] = name
    # sockets, fifos, devices: npm makes none, and a host gets none


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class Bundles:
    """One bundle (or failure) per CLI for a whole run, shared by the hosts' threads."""

    def __init__(self, cache: Path | None = None) -> None:
        self._cache = cache
        self._lock = threading.Lock()
        self._done: dict[CliPackage, Bundle | clicache.CliInstallError] = {}

    def get(self, cli: CliPackage) -> Bundle:
        with self._lock:  # bundles are built one after another: they are disk-bound
            if cli not in self._done:
                try:
                    self._done[cli] = build(cli, self._cache)
                except clicache.CliInstallError as e:
                    self._done[cli] = e
            found = self._done[cli]
        if isinstance(found, clicache.CliInstallError):
            raise clicache.CliInstallError(str(found))
        return found
