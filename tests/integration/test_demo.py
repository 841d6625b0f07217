"""The README's first command, exactly as written, in a fresh clone of this repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_local_up import processes_under

REPO = Path(__file__).resolve().parents[2]


def test_dev_demo_in_a_fresh_clone_shows_every_worker_that_runs_here_answering(
    tmp_path: Path,
) -> None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs git and a git checkout of the repository to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETCTL_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        ["./dev", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "fleet.yaml, servers.yaml: valid" in text
    assert "cmd-docs-01: not started: /usr/local/bin/llm not found" in text
    table = done.stdout
    assert "cmd-wordcount-01" in table and "cmd-keywords-01" in table
    output_row = next(line for line in table.splitlines() if line.startswith("│ output"))
    assert "fleet, agents, summarise, coding, servers" in output_row
    assert "│ 44" in output_row  # the task's words, counted by wc -w
    assert table.count("completed") >= 2
    assert "Local fleet stopped" in text
    assert processes_under(clone) == []
