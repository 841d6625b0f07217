"""Fixtures for poller integration tests: a fresh nats-server and work dir per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.natsserver import NatsServer, running_nats_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    d = tmp_path / "nats"
    d.mkdir()
    with running_nats_server(d) as s:
        yield s


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d
