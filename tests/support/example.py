"""The shipped example fleet, loaded the way the CLI loads it."""

from __future__ import annotations

import shutil
from pathlib import Path

from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FLEET = ROOT / "fleet.yaml"
EXAMPLE_SERVERS = ROOT / "servers.yaml"
CLUSTER_SERVERS = ROOT / "examples" / "cluster" / "servers.yaml"


def example_fleet() -> Fleet:
    return load_fleet(
        EXAMPLE_FLEET, EXAMPLE_SERVERS, fleet_name="fleet.yaml", servers_name="servers.yaml"
    )


def cluster_fleet() -> Fleet:
    """The example fleet on three brokers (examples/cluster/servers.yaml)."""
    return load_fleet(
        EXAMPLE_FLEET, CLUSTER_SERVERS, fleet_name="fleet.yaml", servers_name="servers.yaml"
    )


def example_fleet_dir(directory: Path) -> Path:
    """The example fleet's two files in `directory`, its credential store inside it."""
    shutil.copy(EXAMPLE_SERVERS, directory / "servers.yaml")
    text = EXAMPLE_FLEET.read_text() + "\ncreds:\n  stores_dir: nsc/stores\n  keys_dir: nsc/keys\n"
    (directory / "fleet.yaml").write_text(text)
    return directory
