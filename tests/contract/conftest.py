"""The real LLM CLIs at their pinned versions (poller/backends.py), installed once from npm into
the machine's cache (fleetctl/artifacts/clicache.py), and a nats-server, work dir and provider
mock per test."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl.artifacts import clicache
from fleetctl.artifacts.errors import ArtifactError
from poller.backends import BACKENDS
from tests.integration.conftest import server  # noqa: F401 - a nats-server per test
from tests.support import gitrepos
from tests.support.provider_mock import ProviderMock


@pytest.fixture(scope="session")
def real_cli() -> dict[str, Path]:
    """backend name -> the installed CLI's command. Skips (fails under CI) without npm, or
    with a Node.js older than a CLI needs."""
    try:
        clis = {name: clicache.install(b.cli) for name, b in BACKENDS.items() if b.cli}
    except ArtifactError as e:
        pytest.skip(f"the real LLM CLIs cannot be installed: {e}")
    node = _node_major()
    for b in BACKENDS.values():
        if b.cli and b.cli.node and (node or 0) < b.cli.node:
            found = f"Node.js {node}" if node else "no node on PATH"
            pytest.skip(f"{b.cli.package} needs Node.js >= {b.cli.node}, this machine has {found}")
    return clis


def _node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    try:
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except ValueError:
        return None


UPSTREAM_FILES = {"a.txt": "one\n", "b.txt": "bee\n"}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The worker's home and work base, with a repository `app` (a local upstream of
    UPSTREAM_FILES and the host's mirror) that every task works on: `work/repos.json`, each
    task's worktree at `work/worktrees/<task_id>` (kept after the task, for `retain_s`)."""
    d = tmp_path / "work"
    d.mkdir()
    up = gitrepos.upstream(tmp_path, UPSTREAM_FILES)
    entry = gitrepos.repo_entry(up, gitrepos.mirror(tmp_path))
    gitrepos.repos_file(d / "repos.json", {"app": entry}, worktrees=d / "worktrees", default="app")
    return d


@pytest.fixture
def mock() -> Iterator[ProviderMock]:
    with ProviderMock() as m:
        yield m
