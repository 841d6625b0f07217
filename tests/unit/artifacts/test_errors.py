"""One error type for every shipped artifact: the CLI turns it into `error: ...` and exit 1,
and apply reports it as the host's failed upload, whichever artifact it came from."""

from __future__ import annotations

import ast
from pathlib import Path

import fleetctl.artifacts
from fleetctl.artifacts.errors import ArtifactError, Tampered

PACKAGE = Path(fleetctl.artifacts.__file__).parent


def test_every_artifact_error_is_an_artifact_error() -> None:
    """No module of the package defines an exception of its own: a second type would be one
    more that the CLI and apply must know to catch, or a traceback where one is missed."""
    others = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception", "Tampered"))
                for b in node.bases
            ):
                others.append(f"{path.name}: {node.name}")
    assert others == []
    assert issubclass(Tampered, ArtifactError)
