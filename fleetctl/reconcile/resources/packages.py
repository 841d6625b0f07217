"""Software fleetctl installs itself: the poller's virtual environment, nats-server, the
LLM CLIs. Each is uploaded to the host's staging area first (fleetctl/reconcile/rollout.py)
and installed from there by the agent, which checks what it installs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fleetctl import layout
from fleetctl.artifacts import brokerbinary
from fleetctl.reconcile.resources.base import Attrs, HostKind, Staged, Step
from poller.backends import CliPackage

POLLER_PACKAGE = "fleet-poller"
NATS_PACKAGE = "nats-server"
LLM_CLI_PREFIX = "llm-cli "
# Where the agent reads a package's installed version (an LLM CLI's: its directory's file).
VERSION_PROBES = {POLLER_PACKAGE: layout.POLLER_VERSION_FILE, NATS_PACKAGE: layout.NATS_BIN}
# Packages the agent identifies by the sha256 of their file (never by running it).
HASHED_PACKAGES = (NATS_PACKAGE,)
STAGED_NATS = f"{layout.STAGING_DIR}/nats-server"
CLI_VERSION_TIMEOUT = 60  # seconds `<cli> --version` may take on the host
# Programs the host's own package manager installs (git, for the repositories' mirrors), by
# package: the command that shows it is there. Any version will do, so their version is
# `system`; removing one from the fleet leaves it installed (other software may use it).
SYSTEM_PACKAGES = {"git": "git"}
SYSTEM_VERSION = "system"
SYSTEM_INSTALL_TIMEOUT = 900


@dataclass(frozen=True)
class PackageSpec(HostKind):
    """One installed package (`cli`: which LLM CLI; one package per CLI version, shared by
    the host's workers)."""

    kind: ClassVar[str] = "package"
    order: ClassVar[int] = 3

    name: str
    version: str
    worker: str | None = None
    cli: CliPackage | None = None

    @property
    def key(self) -> str:
        return f"package {self.name}"

    def fingerprint(self) -> dict[str, object]:
        return {"version": self.version}

    def describe(self) -> tuple[str, Attrs]:
        return self.name, (("version", self.version),)

    @classmethod
    def ask(cls, wanted: Sequence[PackageSpec], *, with_contents: bool) -> dict[str, Any]:
        """Each package's version (a system package: whether its command is on the PATH),
        and `node --version` when a CLI here runs on Node."""
        system = [p.name for p in wanted if p.name in SYSTEM_PACKAGES]
        return {
            "versions": {p.name: p.version_probe() for p in wanted if p.name not in system},
            "hashed": list(HASHED_PACKAGES),
            "node": any(p.cli is not None and p.cli.node is not None for p in wanted),
            "commands": [SYSTEM_PACKAGES[name] for name in system],
        }

    def version_probe(self) -> str:
        """Where the agent reads the installed version."""
        if self.cli is not None:
            cli = self.cli
            return f"{layout.llm_cli_dir(cli.package, cli.version)}/{layout.LLM_CLI_VERSION_FILE}"
        return VERSION_PROBES[self.name]

    @classmethod
    def recall(cls, names: Sequence[str]) -> dict[str, Any]:
        """The poller and nats-server wherever they may be (an LLM CLI is always removed)."""
        return {"versions": dict(VERSION_PROBES)}

    @classmethod
    def read(cls, answer: Mapping[str, Any]) -> dict[str, dict[str, object]]:
        """nats-server is named by its hash: the pinned version's, or `sha256:<hash>`."""
        out: dict[str, dict[str, object]] = {}
        for name, version in (answer.get("versions") or {}).items():
            if version and name == NATS_PACKAGE:
                version = brokerbinary.identify(version)
            if version:
                out[f"package {name}"] = {"version": version}
        found = answer.get("commands") or {}
        for name, command in SYSTEM_PACKAGES.items():
            if found.get(command):
                out[f"package {name}"] = {"version": SYSTEM_VERSION}
        return out

    def steps(self, staged: Staged) -> list[Step]:
        if self.name == POLLER_PACKAGE:
            return [Step(f"install the poller {self.version}", _install_poller(self.version))]
        if self.name == NATS_PACKAGE:
            op: dict[str, Any] = {"op": "install_binary", "src": STAGED_NATS}
            op |= {"dest": layout.NATS_BIN, "sha256": staged.nats_sha256}
            return [Step(f"install {self.version}", op)]
        if self.cli is not None:
            cli = self.cli
            op = install_cli(cli, staged.cli_sha256.get(cli.package))
            return [Step(f"install {cli.package} {cli.version}", op)]
        if self.name in SYSTEM_PACKAGES:
            op = {
                "op": "system_package",
                "package": self.name,
                "command": SYSTEM_PACKAGES[self.name],
                "timeout": SYSTEM_INSTALL_TIMEOUT,
            }
            return [Step(f"install {self.name} (the host's package manager)", op)]
        raise ValueError(f"cannot apply package {self.name}")

    @classmethod
    def removal_steps(cls, name: str) -> list[Step]:
        if name in SYSTEM_PACKAGES:
            return []  # the system's package manager owns it; fleetctl only stops needing it
        return [Step(f"remove package {name}", _remove_package(name))]

    @classmethod
    def removal_attrs(cls, name: str) -> Attrs:
        if name in SYSTEM_PACKAGES:
            return (("left", "left installed: the host's package manager owns it"),)
        return ()

    @classmethod
    def removed_path(cls, name: str) -> str | None:
        """An LLM CLI's directory under /opt/fleet (the poller's goes with its own step)."""
        if name.startswith(LLM_CLI_PREFIX):
            return str(_remove_package(name)["path"])
        return None

    @classmethod
    def removed_late(cls, name: str) -> bool:
        return name.startswith(LLM_CLI_PREFIX)


def system_package(name: str) -> PackageSpec:
    """A package of `SYSTEM_PACKAGES`, installed by the host's package manager if missing."""
    return PackageSpec(name, SYSTEM_VERSION)


def llm_cli_package(cli: CliPackage) -> PackageSpec:
    """`llm-cli @openai/codex@0.171.0`: the version is in the name, so two versions can live
    on one host and a bump installs the new one beside the old, which goes once unused."""
    return PackageSpec(f"{LLM_CLI_PREFIX}{cli.package}@{cli.version}", cli.version, cli=cli)


@dataclass(frozen=True)
class Uploads:
    """What a host program's installs need staged on the host first."""

    poller_version: str | None = None  # a wheelhouse of this version
    nats_server: bool = False  # the nats-server binary
    llm_clis: tuple[CliPackage, ...] = ()  # their bundles


def uploads(installed: Iterable[PackageSpec]) -> Uploads:
    """The uploads for installing these packages."""
    packages = list(installed)
    poller = [p.version for p in packages if p.name == POLLER_PACKAGE]
    return Uploads(
        poller[-1] if poller else None,
        any(p.name == NATS_PACKAGE for p in packages),
        tuple(p.cli for p in packages if p.cli is not None),
    )


def staging_wheelhouse(version: str) -> str:
    return f"{layout.STAGING_DIR}/wheelhouse-{version.replace('+', '_')}"


def staged_cli(cli: CliPackage) -> str:
    return f"{layout.STAGING_DIR}/{layout.cli_dir_name(cli.package, cli.version)}.tar"


def _install_poller(version: str) -> dict[str, Any]:
    return {
        "op": "install_poller",
        "link": layout.POLLER_VENV,
        "version": version,
        "wheelhouse": staging_wheelhouse(version),
    }


def install_cli(cli: CliPackage, sha256: str | None) -> dict[str, Any]:
    """The agent's install_tree step for a CLI's bundle (staged by rollout) of this sha256."""
    if sha256 is None:
        raise ValueError(f"no bundle of {cli.package} {cli.version} to install")
    return {
        "op": "install_tree",
        "src": staged_cli(cli),
        "sha256": sha256,
        "dest": layout.llm_cli_dir(cli.package, cli.version),
        "check": [f"bin/{cli.bin}", "--version"],
        "expect": cli.version,
        "timeout": CLI_VERSION_TIMEOUT,
        "version_file": layout.LLM_CLI_VERSION_FILE,
    }


def _remove_package(name: str) -> dict[str, Any]:
    """The poller: its symlink and every virtual environment beside it (`venv-<version>`);
    nats-server: its binary; an LLM CLI: its directory."""
    if name == POLLER_PACKAGE:
        return {"op": "remove_package", "package": name, "venv": layout.POLLER_VENV}
    if name == NATS_PACKAGE:
        return {"op": "remove_package", "package": name, "binary": layout.NATS_BIN}
    if name.startswith(LLM_CLI_PREFIX):
        package, _, version = name.removeprefix(LLM_CLI_PREFIX).rpartition("@")
        return {"op": "remove_dir", "path": layout.llm_cli_dir(package, version)}
    raise ValueError(f"cannot remove package {name}")
