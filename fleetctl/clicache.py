"""The pinned LLM CLIs, installed from npm once into a cache on this machine.

Like the wheelhouse, the cache lives outside any checkout (`$XDG_CACHE_HOME/fleetctl/llm-clis`,
default `~/.cache/fleetctl/llm-clis`), one directory per `<package>@<version>`, so a fresh
clone (a CI run) reuses it and a version bump installs next to the old one. An install goes
to a temporary directory first and is renamed into place when complete, under a lock, so an
interrupted or concurrent install never leaves a half-filled directory that looks done.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from poller.backends import CliPackage

NPM_TIMEOUT = 600


class CliInstallError(RuntimeError):
    """npm is missing or the install failed; the message says which and how to fix it."""


def default_cache_dir() -> Path:
    """Per the XDG spec (a relative XDG_CACHE_HOME is ignored); the account's real home, not
    $HOME, so that tools which give each run its own HOME still share one cache."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "fleetctl" / "llm-clis"
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "fleetctl" / "llm-clis"


def package_dir(cli: CliPackage, cache: Path) -> Path:
    return cache / f"{cli.package.replace('/', '+')}@{cli.version}"


def installed_bin(cli: CliPackage, cache: Path) -> Path | None:
    """The CLI's command in the cache, if that version is completely installed."""
    path = package_dir(cli, cache)
    return path / "node_modules" / ".bin" / cli.bin if (path / ".complete").exists() else None


def install(cli: CliPackage, cache: Path | None = None) -> Path:
    """The path of the pinned CLI's command, installing it with npm first if needed."""
    cache = cache or default_cache_dir()
    found = installed_bin(cli, cache)
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise CliInstallError(f"npm is not on PATH: install Node.js and npm to get {cli.package}")
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = installed_bin(cli, cache)
        if found is not None:  # another process installed it while we waited
            return found
        final = package_dir(cli, cache)
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        cmd = [npm, "install", "--prefix", str(partial), "--no-audit", "--no-fund"]
        done = subprocess.run(
            [*cmd, "--loglevel=error", f"{cli.package}@{cli.version}"],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            tail = done.stderr.strip().splitlines()[-3:]
            raise CliInstallError(f"npm install {cli.package}@{cli.version} failed: {tail}")
        (partial / ".complete").write_text(f"{cli.package}@{cli.version}\n")
        partial.rename(final)
    found = installed_bin(cli, cache)
    assert found is not None
    return found
