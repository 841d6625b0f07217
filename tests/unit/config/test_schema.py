"""The JSON Schemas editors use: committed copies match the code, and accept the example."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from fleetctl.cli.schema import json_schema

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("which", ["fleet", "servers"])
def test_committed_schema_matches_the_code(which: str) -> None:
    committed = json.loads((ROOT / "docs" / "schema" / f"{which}.schema.json").read_text())
    assert committed == json_schema(which), (
        f"regenerate: .venv/bin/fleetctl schema {which} > docs/schema/{which}.schema.json"
    )


@pytest.mark.parametrize("which", ["fleet", "servers"])
def test_example_file_validates_against_its_schema(which: str) -> None:
    document = yaml.safe_load((ROOT / f"{which}.yaml").read_text())
    jsonschema.Draft202012Validator(json_schema(which)).validate(document)


def test_schema_rejects_an_unknown_worker_key() -> None:
    document = yaml.safe_load((ROOT / "fleet.yaml").read_text())
    document["workers"][0]["modle"] = "x"
    validator = jsonschema.Draft202012Validator(json_schema("fleet"))
    assert any("modle" in e.message for e in validator.iter_errors(document))


def test_every_field_is_documented() -> None:
    """docs/configuration.md names every key a user can write."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for which in ("fleet", "servers"):
        schema = json_schema(which)
        for definition in [schema, *schema.get("$defs", {}).values()]:
            for key in definition.get("properties", {}):
                assert f"`{key}`" in doc, f"{which}: `{key}` missing from docs/configuration.md"
