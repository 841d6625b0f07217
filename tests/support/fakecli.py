"""A stand-in npm CLI for the cache and bundle tests: a tree laid out as `npm ci` leaves one
(a scoped package, its command behind npm's .bin link, a hard link inside it as Claude Code's
postinstall used to make), and a lock whose records fit that tree. No npm, no registry: the
records are made the way `./dev lock-clis` makes them, from the tree itself."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from fleetctl.artifacts import clicache, clilock
from poller.backends import CliPackage

CLI = CliPackage("@scope/fake-cli", "1.2.3", "fake", node=20)
SCRIPT = '#!/bin/sh\necho "fake-cli $FAKE_VERSION"\n'


def fake_tree(root: Path, says: str = "1.2.3") -> Path:
    """npm's layout of the fake CLI under `root`; its command prints `fake-cli <says>`."""
    pkg = root / "node_modules" / "@scope" / "fake-cli"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "@scope/fake-cli", "version": "1.2.3"}))
    (pkg / "bin" / "fake.sh").write_text(SCRIPT.replace("$FAKE_VERSION", says))
    (pkg / "bin" / "fake.sh").chmod(0o755)
    os.link(pkg / "bin" / "fake.sh", pkg / "copy.sh")
    (root / "node_modules" / ".bin").mkdir()
    (root / "node_modules" / ".bin" / "fake").symlink_to("../@scope/fake-cli/bin/fake.sh")
    return root


def write_lock(locks: Path, tree: Path, cli: CliPackage = CLI) -> clilock.CliLock:
    """A lock for `cli` in `locks` whose records are those of the install in `tree`."""
    where = locks / f"{cli.package.replace('/', '+')}@{cli.version}"
    where.mkdir(parents=True)
    deps = {cli.package: cli.version}
    (where / "package.json").write_text(json.dumps({"private": True, "dependencies": deps}))
    integrity = "sha512-" + "A" * 86 + "=="  # npm's to check; these tests never run npm
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"dependencies": deps},
            f"node_modules/{cli.package}": {"version": cli.version, "integrity": integrity},
        },
    }
    raw = json.dumps(lock, indent=2).encode()
    (where / "package-lock.json").write_bytes(raw)
    records = {
        "format": clilock.TREES_FORMAT,
        "lock_sha256": hashlib.sha256(raw).hexdigest(),
        "packages": clilock.check_dir(tree).digests(),
    }
    (where / clilock.TREES).write_text(json.dumps(records))
    return clilock.load(cli, locks)


def cached_cli(cache: Path, locks: Path, says: str = "1.2.3", cli: CliPackage = CLI) -> Path:
    """A completed cache entry of the fake CLI, as clicache installs it, and its lock."""
    made = fake_tree(Path(tempfile.mkdtemp(dir=cache.parent)) / "made-by-npm", says)
    write_lock(locks, made, cli)
    root = clicache.package_dir(cli, cache, locks)
    root.parent.mkdir(parents=True, exist_ok=True)
    made.rename(root)
    (root / clicache.MARKER).write_text("{}\n")
    return root
