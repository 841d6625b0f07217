"""What the wheelhouse tests share: a private copy of the poller's sources, and the fake pip
and poller lock (tests/support/fakepip.py) that stand in for the package index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleetctl.artifacts import pipfetch, pollerwheel, wheellock
from tests.support.fakepip import FAKE_LOCK, FakePip

REAL_POLLER = pollerwheel._poller_dir()


@pytest.fixture
def poller_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the poller sources, so tests can edit them without touching the repo."""
    copy = tmp_path / "src" / "poller"
    shutil.copytree(REAL_POLLER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pollerwheel, "_poller_dir", lambda: copy)
    return copy


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> FakePip:
    fake = FakePip()
    monkeypatch.setattr(pipfetch, "run", fake)
    monkeypatch.setattr(wheellock, "poller_lock", lambda: FAKE_LOCK)
    return fake
