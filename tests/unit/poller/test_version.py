"""The poller reports the version of the wheel it was installed from, `<release>+<build hash>`,
exactly as the plan shows it: results and heartbeats say which build produced them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import poller
from fleetctl.artifacts import pollerwheel

REPORT = """
import sys
sys.path.insert(0, sys.argv[1])
import poller, poller.records, poller.heartbeat
stats = poller.heartbeat.Stats(worker_id="w1", backend="command", llm="command", concurrency=1)
print(poller.__file__)
print(poller.__version__)
print(poller.records.__version__)  # what every result carries
print(stats.snapshot()["poller_version"])  # what every heartbeat and ping reply carries
"""


def test_an_installed_poller_reports_the_version_the_plan_shows(tmp_path: Path) -> None:
    wheel = pollerwheel.build_poller_wheel(tmp_path / "dist")
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    done = subprocess.run(
        [sys.executable, "-c", REPORT, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    where, *versions = done.stdout.split()
    assert Path(where).is_relative_to(target)
    assert versions == [pollerwheel.poller_version()] * 3
    assert "+" in versions[0]


def test_a_source_checkout_reports_the_release() -> None:
    # No fleet-poller wheel installed beside this copy of the poller: the release alone.
    assert poller.__version__ == poller.RELEASE
