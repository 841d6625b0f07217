"""`fleetctl schema fleet|servers`: JSON Schema for editors (yaml-language-server)."""

from __future__ import annotations

import json
from typing import Any

import click

from fleetctl.config.schema import FleetFile, ServersFile


def json_schema(which: str) -> dict[str, Any]:
    model = FleetFile if which == "fleet" else ServersFile
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://fleetctl.dev/schema/{which}.schema.json"
    return schema


@click.command()
@click.argument("which", type=click.Choice(["fleet", "servers"]))
def schema(which: str) -> None:
    """Print the JSON Schema of fleet.yaml or servers.yaml."""
    click.echo(json.dumps(json_schema(which), indent=2, sort_keys=True))
