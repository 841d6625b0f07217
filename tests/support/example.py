"""The shipped example fleet, loaded the way the CLI loads it."""

from __future__ import annotations

from pathlib import Path

from fleetctl.config.loader import load_fleet
from fleetctl.model import Fleet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FLEET = ROOT / "fleet.yaml"
EXAMPLE_SERVERS = ROOT / "servers.yaml"


def example_fleet() -> Fleet:
    return load_fleet(
        EXAMPLE_FLEET, EXAMPLE_SERVERS, fleet_name="fleet.yaml", servers_name="servers.yaml"
    )
