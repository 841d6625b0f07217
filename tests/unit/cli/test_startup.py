"""What the `fleetctl` command loads and how it collects garbage: start-up is a large
share of a no-op plan (docs/performance.md), so these are kept from creeping back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleetctl.cli.entry import ALLOCATIONS_PER_PASS

REPO = Path(__file__).resolve().parents[3]

# Runs the command's entry point as the console script does, then reports at exit.
PROBE = """
import atexit, gc, json, sys
path = sys.argv[1]
def report():
    with open(path, "w") as f:
        json.dump({"modules": sorted(sys.modules), "threshold": gc.get_threshold()[0]}, f)
atexit.register(report)
sys.argv = ["fleetctl", *sys.argv[2:]]
from fleetctl.cli.entry import main
main()
"""


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    found: dict[str, Any] = json.loads(report.read_text())
    return done, found


def test_plan_loads_neither_apply_nor_creds(tmp_path: Path) -> None:
    done, report = _run(tmp_path, "plan", "--dry-run")
    assert done.returncode == 0, done.stderr
    modules = set(report["modules"])
    assert "fleetctl.cli.plan" in modules
    for unneeded in ("fleetctl.cli.apply", "fleetctl.cli.creds", "rich.progress"):
        assert unneeded not in modules, f"`fleetctl plan` imported {unneeded}"


def test_command_sets_its_collector_policy_before_running(tmp_path: Path) -> None:
    done, report = _run(tmp_path, "validate")
    assert done.returncode == 0, done.stderr
    assert report["threshold"] == ALLOCATIONS_PER_PASS


def test_help_still_lists_every_command(tmp_path: Path) -> None:
    done, _ = _run(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    for command in ("validate", "plan", "apply", "render", "schema", "creds"):
        assert f"  {command} " in done.stdout
