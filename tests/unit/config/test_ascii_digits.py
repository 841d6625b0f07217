"""Durations and sizes are written in ASCII digits: Python's \\d and int() also take other
scripts' digits (a fullwidth 5), which editors' JSON Schema checks refuse; so does fleetctl."""

from __future__ import annotations

import jsonschema
import pytest

from fleetctl.cli.schema import json_schema
from fleetctl.config.errors import BadValue
from fleetctl.config.values import parse_duration, parse_size


@pytest.mark.parametrize("value", ["５m", "1٥s", "२h", "５"])
def test_a_duration_in_other_digits_is_refused(value: str) -> None:
    with pytest.raises(BadValue, match="is not a duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["１GiB", "5٥MiB", "१"])
def test_a_size_in_other_digits_is_refused(value: str) -> None:
    with pytest.raises(BadValue, match="is not a size"):
        parse_size(value)


def test_ascii_ones_still_parse() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_size("2GiB") == 2 * 1024**3


def test_the_schema_refuses_them_too() -> None:
    """The schema's patterns say [0-9] (a Python validator's \\d would take a fullwidth 5)."""
    schema = json_schema("fleet")
    text = str(schema)
    assert "\\\\d" not in text and "\\d" not in text
    duration = {"type": "string", "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$"}
    assert duration in _subschemas(schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("５m", duration)


def _subschemas(node: object) -> list[object]:
    found: list[object] = []
    if isinstance(node, dict):
        found.append(node)
        for v in node.values():
            found.extend(_subschemas(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_subschemas(v))
    return found
