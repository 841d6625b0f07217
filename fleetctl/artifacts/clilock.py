"""The lock of each LLM CLI version: what npm may download, and what it must leave on disk.

Every CLI pinned in poller/backends.py has a directory under `fleetctl/artifacts/llm-cli-locks/`
(`@openai+codex@0.171.0`), shipped inside fleetctl and reviewed like any source file:

- `package.json`: the CLI at exactly that version, nothing else;
- `package-lock.json`: npm's lock, the sha512 `integrity` of every package tarball the CLI
  can pull in on any platform (`npm ci` refuses a tarball that differs);
- `trees.json`: for every package of the lock that npm installs on a recorded platform, the
  sha256 of its directory as `npm ci --ignore-scripts` leaves it, and the sha256 of the
  lock it was made from.

The lock covers the download; `trees.json` covers what is on disk afterwards. The CLI cache
(fleetctl/artifacts/clicache.py) and every bundle built from it
(fleetctl/artifacts/clibundle.py) are checked
against these records, which whoever can write the cache cannot change. Records are per
package, not per tree, so one set fits every platform and npm version: each platform gets a
different set of native packages, and an older npm installs some more (npm 9 ignores `libc`
and installs the musl binaries beside the glibc ones), but every package directory it makes
must match its record, and nothing else may be there.

An llm's `version:` in fleet.yaml names a version fleetctl has no lock for: its lock is
written, by `python -m fleetctl.artifacts.clilock PACKAGE@VERSION`, into the operator's own
directory
on the control machine (`$XDG_CONFIG_HOME/fleetctl/llm-cli-locks`), which a change to the
fleet's repository cannot write. `./dev lock-clis` writes the shipped ones when a pin moves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetctl.artifacts.digest import sha256_file
from fleetctl.artifacts.errors import ArtifactError, Tampered
from fleetctl.layout import cli_dir_name
from poller.backends import BACKENDS, CliPackage

LOCKS_DIR = Path(__file__).with_name("llm-cli-locks")  # the pins' locks, shipped
TREES = "trees.json"
TREES_FORMAT = 1
# What the records cover: where the fleet's hosts and control machines run. A package npm
# installs only elsewhere (Windows) has no record, and is refused if it ever turns up.
PLATFORMS: tuple[tuple[str, str, str | None], ...] = (
    ("linux", "x64", "glibc"),
    ("linux", "x64", "musl"),
    ("linux", "arm64", "glibc"),
    ("linux", "arm64", "musl"),
    ("darwin", "x64", None),
    ("darwin", "arm64", None),
)
NPM_TIMEOUT = 900
_SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class CliLock:
    """One CLI's lock, checked against its pin."""

    cli: CliPackage
    dir: Path
    sha256: str  # of package-lock.json: a cache entry remembers which lock it came from
    trees: Mapping[str, str]  # package path in node_modules -> sha256 of its tree

    @property
    def main(self) -> str:
        return f"node_modules/{self.cli.package}"


def operator_locks_dir() -> Path:
    """Locks for versions fleetctl does not pin (an llm's `version:`), per the XDG spec."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not (base and Path(base).is_absolute()):
        base = str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".config")
    return Path(base) / "fleetctl" / "llm-cli-locks"


def lock_dir(cli: CliPackage, locks: Path | None = None) -> Path:
    """Where the lock of this CLI version is: in `locks` if given, else fleetctl's own, else
    the operator's (the first that has one; the operator's when neither has)."""
    name = cli_dir_name(cli.package, cli.version)
    if locks is not None:
        return locks / name
    shipped = LOCKS_DIR / name
    return shipped if shipped.is_dir() else operator_locks_dir() / name


def load(cli: CliPackage, locks: Path | None = None) -> CliLock:
    """The CLI's lock, or ArtifactError when it is missing or is not for this version."""
    where = lock_dir(cli, locks)
    pinned = any(b.cli == cli for b in BACKENDS.values())
    fix = (
        "run `./dev lock-clis` and commit what it writes"
        if pinned
        else f"`python -m fleetctl.artifacts.clilock {cli.package}@{cli.version}` writes it there "
        "(review it: it is what every host will run)"
    )
    if not where.is_dir():
        shown = LOCKS_DIR / where.name if pinned and locks is None else where
        raise ArtifactError(f"no lock for {cli.package} {cli.version} in {shown}: {fix}")
    try:
        manifest = json.loads((where / "package.json").read_text())
        raw = (where / "package-lock.json").read_bytes()
        lock = json.loads(raw)
        trees = json.loads((where / TREES).read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(
            f"no usable lock for {cli.package} {cli.version} in {where} ({e}): {fix}"
        ) from None
    problems = _lock_problems(cli, manifest, lock)
    digest = hashlib.sha256(raw).hexdigest()
    if not isinstance(trees, dict) or trees.get("lock_sha256") != digest:
        problems.append(f"{TREES} was not made from this package-lock.json")
    if problems:
        raise ArtifactError(
            f"the lock in {where} is not one for {cli.package} {cli.version}: "
            f"{'; '.join(problems)}: {fix}"
        )
    return CliLock(cli, where, digest, dict(trees.get("packages", {})))


def _lock_problems(cli: CliPackage, manifest: Any, lock: Any) -> list[str]:
    want = {cli.package: cli.version}
    problems = []
    if not isinstance(manifest, dict) or manifest.get("dependencies") != want:
        problems.append(f"package.json must depend on exactly {cli.package} {cli.version}")
    packages = lock.get("packages") if isinstance(lock, dict) else None
    if not isinstance(packages, dict):
        return [*problems, "package-lock.json has no `packages` (lockfileVersion 3)"]
    if (packages.get("") or {}).get("dependencies") != want:
        problems.append("package-lock.json is not for package.json (`npm ci` would refuse it)")
    main = packages.get(f"node_modules/{cli.package}") or {}
    if main.get("version") != cli.version:
        problems.append(f"package-lock.json has {cli.package} {main.get('version')}")
    for path, entry in packages.items():
        if path and not str(entry.get("integrity", "")).startswith("sha512-"):
            problems.append(f"{path} has no sha512 integrity")
    return problems


# -- a package's tree ---------------------------------------------------------------------


def walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Every path under `root/node_modules` (itself first), as a path relative to `root`
    with `/`, in a fixed order, without following links."""
    top = root / "node_modules"
    if not top.exists() and not top.is_symlink():
        return
    found = [("node_modules", top)]
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            found.append((path.relative_to(root).as_posix(), path))
    yield from sorted(found, key=lambda entry: entry[0].split("/"))  # each dir, then its tree


def _locate(rel: str) -> tuple[str, str] | None:
    """("pkg", path) / ("bin", dir) for what `rel` is part of, or None for npm's own
    directories (`node_modules`, a scope, a nested `node_modules`). `rel` starts with
    `node_modules/`: walk() and bundles give nothing else."""
    parts = rel.split("/")
    i = 0
    package = None
    while i < len(parts) and parts[i] == "node_modules":
        if i + 1 == len(parts):
            return None
        name = parts[i + 1]
        if name == ".bin":
            return ("bin", "/".join(parts[: i + 2]))
        width = 3 if name.startswith("@") else 2
        if i + width > len(parts):
            return None  # a scope directory
        package = "/".join(parts[: i + width])
        i += width
    assert package is not None, rel
    return ("pkg", package)


class TreeCheck:
    """The entries of one install, as a walk of its directory or of its bundle finds them,
    sorted into its packages; compared with the lock's records at the end. Modes are not
    recorded (npm's depend on the umask); contents and link targets are."""

    def __init__(self) -> None:
        self._entries: dict[str, list[str]] = defaultdict(list)
        self._files: set[str] = set()
        self._bins: list[tuple[str, str, str]] = []  # (path, kind, link target)
        self.problems: list[str] = []

    def add(self, rel: str, kind: str, value: str = "") -> None:
        """`kind` d (directory), f (file: `value` is its sha256) or l (link: its target)."""
        place = _locate(rel)
        if place is None:
            if kind != "d":
                self.problems.append(f"{rel} is not a directory")
            return
        what, where = place
        if what == "bin":
            if rel != where:
                self._bins.append((rel, kind, value))
            elif kind != "d":
                self.problems.append(f"{rel} is not a directory")
            return
        inner = rel[len(where) + 1 :]
        self._entries[where].append(json.dumps([inner, kind, value]))
        if kind == "f":
            self._files.add(rel)

    def add_path(self, rel: str, path: Path) -> None:
        """An entry of an install on disk, its file hashed."""
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            self.add(rel, "l", str(path.readlink()))
        elif stat.S_ISDIR(st.st_mode):
            self.add(rel, "d")
        elif stat.S_ISREG(st.st_mode):
            self.add(rel, "f", sha256_file(path))
        else:
            self.problems.append(f"{rel} is not a file, directory or link")

    def has_file(self, rel: str) -> bool:
        """Whether `rel` is a file of one of the install's packages."""
        return rel in self._files

    def digests(self) -> dict[str, str]:
        """Each package's tree sha256."""
        out = {}
        for package, entries in self._entries.items():
            blob = "\n".join(sorted(entries)).encode()
            out[package] = hashlib.sha256(blob).hexdigest()
        return out

    def compare(self, lock: CliLock) -> list[str]:
        """What differs from the lock's records: nothing when the install is the lock's."""
        problems = list(self.problems)
        found = self.digests()
        for package in sorted(found):
            if package not in lock.trees:
                problems.append(f"{package} is not a package the lock records")
            elif found[package] != lock.trees[package]:
                problems.append(f"{package} differs from its recorded contents")
        if lock.main not in found:
            problems.append(f"{lock.main} is missing")
        for rel, kind, target in self._bins:
            to = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if kind != "l" or target.startswith("/") or to not in self._files:
                problems.append(f"{rel} is not a link to a file of the lock's packages")
        return problems


def check_dir(root: Path) -> TreeCheck:
    """The entries of the install in `root` (a cache entry), every file hashed."""
    check = TreeCheck()
    for rel, path in walk(root):
        check.add_path(rel, path)
    return check


def tampered(cli: CliPackage, where: Path, lock: CliLock, problems: list[str]) -> Tampered:
    """The error for an install that differs from its lock: what, and how to recover."""
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    hidden = len(problems) - _SHOWN_PROBLEMS
    more = f" (and {hidden} more)" if hidden > 0 else ""
    return Tampered(
        f"{cli.package} {cli.version} in the CLI cache ({where}) is not what npm installed "
        f"from its lock ({lock.dir}): {shown}{more}. Something changed it after the install, "
        f"so it is not used. Look at what changed, then remove {where} and run "
        "`fleetctl up --install-clis` (or apply) to install it again from the lock."
    )


# -- writing the locks ----------------------------------------------------------------------


def _npm(args: list[str], cwd: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ArtifactError("npm is not on PATH: install Node.js and npm")
    done = subprocess.run(
        [npm, *args, "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise ArtifactError(f"npm {' '.join(args)} failed: {tail}")


def write_lock(
    cli: CliPackage,
    where: Path,
    platforms: tuple[tuple[str, str, str | None], ...] = PLATFORMS,
) -> Path:
    """The CLI's lock written into `where` (a directory of locks): npm resolves it (keeping
    the versions the package's newest lock there has where they still fit), then installs
    it once per platform with scripts off and records every package's tree. Needs npm 10 or
    newer (`--os`, `--cpu`, `--libc`)."""
    out = where / cli_dir_name(cli.package, cli.version)
    with tempfile.TemporaryDirectory(prefix="fleetctl-clilock-") as tmp:
        work, npm_cache = Path(tmp) / "lock", Path(tmp) / "npm-cache"
        work.mkdir()
        manifest = {"name": "fleetctl-llm-cli", "private": True}
        manifest["dependencies"] = {cli.package: cli.version}
        (work / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        previous = sorted(where.glob(f"{cli_dir_name(cli.package, '')}*/package-lock.json"))
        if previous:
            shutil.copy(previous[-1], work / "package-lock.json")
        plain = ["--ignore-scripts", "--omit-lockfile-registry-resolved", f"--cache={npm_cache}"]
        _npm(["install", "--package-lock-only", *plain], work)
        raw = (work / "package-lock.json").read_bytes()
        trees: dict[str, str] = {}
        for os_name, cpu, libc in platforms:
            shutil.rmtree(work / "node_modules", ignore_errors=True)
            target = [f"--os={os_name}", f"--cpu={cpu}"] + ([f"--libc={libc}"] if libc else [])
            _npm(["ci", *plain, *target], work)
            (work / "node_modules" / ".package-lock.json").unlink(missing_ok=True)
            check = check_dir(work)
            if check.problems:
                raise ArtifactError(f"npm installed {cli.package} oddly: {check.problems}")
            for package, digest in check.digests().items():
                if trees.setdefault(package, digest) != digest:
                    raise ArtifactError(f"{package} differs between platforms: not recorded")
        if (work / "package-lock.json").read_bytes() != raw:
            raise ArtifactError(f"npm ci changed the lock of {cli.package}: not recorded")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "package.json", out / "package.json")
        (out / "package-lock.json").write_bytes(raw)
        record = {
            "format": TREES_FORMAT,
            "lock_sha256": hashlib.sha256(raw).hexdigest(),
            "platforms": ["-".join(p for p in platform if p) for platform in platforms],
            "packages": dict(sorted(trees.items())),
        }
        (out / TREES).write_text(json.dumps(record, indent=2) + "\n")
    return out


def main(argv: list[str]) -> int:
    """`./dev lock-clis [--all] [PACKAGE...]`: write the shipped locks whose pin moved (or
    those named, or all) and remove the ones no pin uses. `PACKAGE@VERSION`: a lock for a
    version fleetctl does not pin, into the operator's directory."""
    pinned = list(dict.fromkeys(b.cli for b in BACKENDS.values() if b.cli is not None))
    by_name = {c.package: c for c in pinned}
    todo: list[tuple[CliPackage, Path]] = []
    for arg in argv:
        package, at, version = arg.rpartition("@")
        if arg == "--all":
            todo += [(c, LOCKS_DIR) for c in pinned]
        elif arg in by_name:
            todo.append((by_name[arg], LOCKS_DIR))
        elif at and package in by_name and version:
            cli = dataclasses.replace(by_name[package], version=version)
            todo.append((cli, LOCKS_DIR if cli in pinned else operator_locks_dir()))
        else:
            known = ", ".join(by_name)
            print(f"{arg}: not a pinned CLI ({known}), with or without @VERSION", file=sys.stderr)
            return 1
    if not argv:
        todo = [(c, LOCKS_DIR) for c in pinned if not _fits(c)]
    for cli, where in todo:
        print(f"locking {cli.package} {cli.version} in {where}", file=sys.stderr)
        try:
            print(write_lock(cli, where))
        except ArtifactError as e:
            print(str(e), file=sys.stderr)
            return 1
    keep = {cli_dir_name(c.package, c.version) for c in pinned}
    for stale in sorted(LOCKS_DIR.iterdir()) if LOCKS_DIR.is_dir() else []:
        if stale.is_dir() and stale.name not in keep:
            print(f"removing {stale} (no pin uses it)", file=sys.stderr)
            shutil.rmtree(stale)
    return 0


def _fits(cli: CliPackage) -> bool:
    try:
        load(cli, LOCKS_DIR)
    except ArtifactError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
