"""Errors about files fleetctl keeps on this machine, reported without a traceback."""

from __future__ import annotations

from pathlib import Path


class LocalFileError(Exception):
    """A local file fleetctl cannot use: the CLI prints `path: what (fix)` and exits 1."""

    def __init__(self, path: Path, what: str, fix: str) -> None:
        super().__init__(f"{path}: {what}")
        self.path = path
        self.what = what
        self.fix = fix
