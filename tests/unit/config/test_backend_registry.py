"""The backend registry is the one list of backends: fleetctl's schema, llms and units read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fleetctl.cli.schema import json_schema
from fleetctl.config.llms import BUILTIN_LLMS
from fleetctl.config.model import Worker
from poller.backends import BACKENDS, NAMES

ROOT = Path(__file__).resolve().parents[3]


def test_the_schema_accepts_exactly_the_registry_backends() -> None:
    llm = json_schema("fleet")["$defs"]["LlmSpec"]["properties"]["backend"]
    assert tuple(llm["enum"]) == NAMES


def test_builtin_llms_come_from_the_registry() -> None:
    expected = {(b.name, llm.name) for b in BACKENDS.values() for llm in b.llms}
    assert {(spec.backend, name) for name, spec in BUILTIN_LLMS.items()} == expected
    assert BUILTIN_LLMS["zai"].requires_env_file
    assert all(spec.bin is None for spec in BUILTIN_LLMS.values())  # apply installs the CLI


def test_every_setting_is_a_worker_field() -> None:
    """A backend's setting names the Worker field its unit line is rendered from."""
    fields = {f.name for f in dataclasses.fields(Worker)}
    for backend in BACKENDS.values():
        for setting in backend.settings:
            assert setting.field in fields, f"{backend.name}: Worker has no {setting.field!r}"


def test_every_variable_is_documented() -> None:
    doc = (ROOT / "docs" / "poller.md").read_text()
    for backend in BACKENDS.values():
        for setting in backend.settings:
            assert f"`{setting.env}`" in doc, f"{setting.env} missing from docs/poller.md"
