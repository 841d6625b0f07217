"""The pinned LLM CLIs, installed from their locks once into a cache on this machine.

Like the wheelhouse, the cache lives outside any checkout (`$XDG_CACHE_HOME/fleetctl/llm-clis`,
default `~/.cache/fleetctl/llm-clis`), one directory per `<package>@<version>`, so a fresh
clone (a CI run) reuses it and a version bump installs next to the old one. An install is
`npm ci --ignore-scripts` from the CLI's lock (fleetctl/artifacts/clilock.py), into a temporary
directory first, checked against the lock's records of every package's tree, and renamed
into place when complete, under a lock, so an interrupted or concurrent install never
leaves a half-filled directory that looks done.

The cache is not trusted: whatever can write it (a restored CI cache, another tool, a copy
from another machine) could plant a package there. So every use checks the entry again
against the records that come with its lock, and one that differs is refused with what
differs and how to recover. The `.complete` marker only says an install finished; an entry
is named by its lock's sha256 too, so an install from an older lock or by an older
fleetctl is never taken for the current one (it stays until removed).

No install script runs. None of the CLIs needs one: Claude Code's postinstall only links
its platform's native binary over a stub launcher, and fleetctl runs that native binary
directly (`command`), as it does Codex's; Gemini CLI's optional node-pty and keytar would
compile native modules it does without.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from fleetctl.artifacts import clilock
from fleetctl.artifacts.clilock import CliLock
from fleetctl.artifacts.errors import ArtifactError
from poller.backends import CliPackage

NPM_TIMEOUT = 600
MARKER = ".complete"
_ELF = b"\x7fELF"
# Where npm packages put the native binaries their launchers start: Codex's layout, and
# Claude Code's platform packages (`@anthropic-ai/claude-code-linux-x64/claude`).
_NATIVE_GLOBS = ("*/*/vendor/*/bin/{}", "*/*/{}")

# Entries checked in this process: root -> (lock sha256, every entry's stat). Checked again
# when any file changed: writing one changes its ctime, which only root can set back.
_checked: dict[Path, tuple[str, list[tuple[str, int, int, int, int, int]]]] = {}


def default_cache_dir() -> Path:
    """Per the XDG spec (a relative XDG_CACHE_HOME is ignored); the account's real home, not
    $HOME, so that tools which give each run its own HOME still share one cache."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "fleetctl" / "llm-clis"
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "fleetctl" / "llm-clis"


def package_dir(cli: CliPackage, cache: Path, locks: Path | None = None) -> Path:
    """The CLI's entry in the cache: named by its lock too, so an install from another lock
    (or by an older fleetctl, which ran npm's install scripts) is never taken for this one."""
    lock = clilock.load(cli, locks)
    return cache / f"{cli.package.replace('/', '+')}@{cli.version}-{lock.sha256[:12]}"


def command(cli: CliPackage, root: Path) -> str:
    """What the poller runs in an install (`root`), relative to it: the CLI's native binary
    when its npm launcher is a Node script or a stub that only starts one (Codex, Claude Code
    without its postinstall), so no Node is needed for it; otherwise its npm command, which
    only a CLI the registry says runs on Node (`CliPackage.node`) may be."""
    launcher = (root / "node_modules" / ".bin" / cli.bin).resolve()
    if not launcher.is_relative_to(root.resolve()):
        raise ArtifactError(f"{cli.package}'s {cli.bin} points outside its install")
    if _is_elf(launcher):
        return str(launcher.relative_to(root.resolve()))
    modules = root / "node_modules"
    for pattern in _NATIVE_GLOBS:
        natives = sorted(p for p in modules.glob(pattern.format(cli.bin)) if _is_elf(p))
        if natives:
            return str(natives[0].relative_to(root))
    if cli.node is None:
        raise ArtifactError(
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


def installed(cli: CliPackage, cache: Path | None = None, locks: Path | None = None) -> Path | None:
    """The CLI's command in the cache, checked against its lock; None when the lock's
    install is not there (`install` makes it). Raises Tampered when it differs."""
    lock = clilock.load(cli, locks)
    root = package_dir(cli, cache or default_cache_dir(), locks)
    if not (root / MARKER).exists():
        return None
    verify(lock, root)
    return root / command(cli, root)


def verify(lock: CliLock, root: Path) -> None:
    """The entry in `root` is exactly what npm installed from `lock`, or Tampered."""
    try:
        signature = _signature(root)
        if _checked.get(root) == (lock.sha256, signature):
            return
        problems = clilock.check_dir(root).compare(lock)
    except OSError as e:  # changed while it was read
        problems = [f"cannot be read: {e}"]
    if problems:
        _checked.pop(root, None)
        raise clilock.tampered(lock.cli, root, lock, problems)
    _checked[root] = (lock.sha256, signature)


def _signature(root: Path) -> list[tuple[str, int, int, int, int, int]]:
    out = []
    for rel, path in clilock.walk(root):
        st = path.lstat()
        out.append((rel, st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return out


def fetch(cli: CliPackage, cache: Path | None = None, locks: Path | None = None) -> Path:
    """The cache entry of the CLI's lock, installed with npm first if it is not there. An
    entry that is there is not checked here: whoever uses it checks it."""
    lock = clilock.load(cli, locks)
    cache = cache or default_cache_dir()
    root = package_dir(cli, cache, locks)
    if (root / MARKER).exists():
        return root
    npm = shutil.which("npm")
    if npm is None:
        raise ArtifactError(f"npm is not on PATH: install Node.js and npm to get {cli.package}")
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (root / MARKER).exists():  # else installed while we waited
            _install(npm, lock, root)
    return root


def _install(npm: str, lock: CliLock, final: Path) -> None:
    cli = lock.cli
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(lock.dir / name, partial / name)
    cmd = [npm, "ci", "--prefix", str(partial), "--ignore-scripts", "--no-audit", "--no-fund"]
    done = subprocess.run(
        [*cmd, "--loglevel=error"],
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = done.stderr.strip().splitlines()[-3:]
        raise ArtifactError(f"npm ci of {cli.package}@{cli.version} failed: {tail}")
    # npm's own cache of the lock, with this directory's name in it: npm ci does not need it.
    (partial / "node_modules" / ".package-lock.json").unlink(missing_ok=True)
    problems = clilock.check_dir(partial).compare(lock)
    if problems:
        shutil.rmtree(partial, ignore_errors=True)
        raise ArtifactError(
            f"npm ci installed {cli.package}@{cli.version} differently from the lock's "
            f"records ({lock.dir}): {'; '.join(problems[:5])}. An npm older than 7 or a "
            "platform the records do not cover? (`./dev lock-clis` records more)"
        )
    (partial / MARKER).write_text(json.dumps({"lock": lock.sha256}) + "\n")
    if final.is_symlink():
        final.unlink()
    shutil.rmtree(final, ignore_errors=True)  # an unfinished one, without its marker
    partial.rename(final)


def install(cli: CliPackage, cache: Path | None = None, locks: Path | None = None) -> Path:
    """The path of the pinned CLI's command, checked against its lock; installed from the
    lock first if needed. Raises Tampered when the entry differs from the lock."""
    fetch(cli, cache, locks)
    found = installed(cli, cache, locks)
    assert found is not None
    return found
