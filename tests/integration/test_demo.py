"""The README's first command, exactly as written, in a fresh clone of this repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
    # An empty CLI cache, as on a new user's machine (pip keeps its own cache).
    pip_cache = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env |= {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PIP_CACHE_DIR": pip_cache}
    done = subprocess.run(
        ["./dev", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    said = done.stderr.splitlines()
    phases = [line for line in said if line.startswith("dev: ")]
    assert phases == [
        "dev: creating .venv (python3 -m venv)",
        "dev: installing the build tools (pip, requirements/build.txt)",
        phases[2],
        "dev: installing fleetctl from this checkout (pip install -e .)",
        "dev: .venv is ready",
    ], text
    assert re.fullmatch(r"dev: installing \d+ locked packages, each checked by .*", phases[2])
    assert "fleet.yaml, servers.yaml: valid" in text
    # What did not start comes last, in two lines; the details under --verbose.
    assert said[-2:] == [
        "4 workers need an LLM CLI: fleetctl up --install-clis",
        "1 worker cannot start here: cmd-docs-01 (--verbose says why)",
    ], text
    assert "not started" not in done.stderr
    verbose = subprocess.run(
        ["./dev", "demo", "--verbose"], cwd=clone, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "cmd-docs-01: not started: /usr/local/bin/llm not found" in verbose.stderr
    assert "cc-go-dev-01: not started: @anthropic-ai/claude-code@" in verbose.stderr
    assert not [line for line in verbose.stderr.splitlines() if line.startswith("dev: ")]
    table = done.stdout
    assert "cmd-wordcount-01" in table and "cmd-keywords-01" in table
    output_row = next(line for line in table.splitlines() if line.startswith("│ output"))
    assert "fleet, agents, summarise, coding, servers" in output_row
    assert "│ 44" in output_row  # the task's words, counted by wc -w
    assert table.count("completed") >= 2
    assert "Local fleet stopped" in text
    assert processes_under(clone) == []
