"""Software fleetctl installs itself: the poller's virtual environment, nats-server, the
LLM CLIs."""

from __future__ import annotations

from dataclasses import dataclass

from poller.backends import CliPackage

POLLER_PACKAGE = "fleet-poller"
NATS_PACKAGE = "nats-server"
LLM_CLI_PREFIX = "llm-cli "


@dataclass(frozen=True)
class PackageSpec:
    """One installed package (`cli`: which LLM CLI; one package per CLI version, shared by
    the host's workers)."""

    name: str
    version: str
    worker: str | None = None
    cli: CliPackage | None = None

    @property
    def key(self) -> str:
        return f"package {self.name}"


def llm_cli_package(cli: CliPackage) -> PackageSpec:
    """`llm-cli @openai/codex@0.171.0`: the version is in the name, so two versions can live
    on one host and a bump installs the new one beside the old, which goes once unused."""
    return PackageSpec(f"{LLM_CLI_PREFIX}{cli.package}@{cli.version}", cli.version, cli=cli)
