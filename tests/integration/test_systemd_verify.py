"""Every rendered unit passes `systemd-analyze verify` with an empty stderr.

The units' binaries (the poller, autossh, nats-server) are not installed on the test
machine, so each host's units are verified against a temporary root that has the distro's
unit library plus an executable at every ExecStart path: the check still fails for a
missing Requires= unit, a relative path, an unknown key or a bad value.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.resources.files import FileSpec
from tests.support.example import example_fleet

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
UNIT_LIBRARY = Path("/usr/lib/systemd/system")

pytestmark = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None or not UNIT_LIBRARY.is_dir(),
    reason="systemd-analyze and /usr/lib/systemd/system are needed (apt-get install systemd)",
)


def _exec_paths(unit: str) -> list[str]:
    paths = []
    for line in unit.splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStart", "ExecReload", "ExecStop") and value:
            paths.append(value.lstrip("-@:+!").split()[0])
    return paths


def _root_with(tmp_path: Path, units: list[FileSpec]) -> list[Path]:
    root = tmp_path / "root"
    shutil.copytree(UNIT_LIBRARY, root / UNIT_LIBRARY.relative_to("/"), symlinks=True)
    written = []
    for spec in units:
        target = root / spec.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(spec.content)
        written.append(target)
        for exe in _exec_paths(spec.content.decode()):
            stub = root / exe.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return written


def _verify(root: Path, units: list[Path]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", f"--root={root}", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("host", ["broker-host", "worker-node-1", "worker-node-2"])
def test_every_unit_of_the_example_fleet_verifies_cleanly(tmp_path: Path, host: str) -> None:
    state = desired_state(example_fleet()).hosts[host]
    units = [f for f in state.files if f.path.endswith(".service")]
    assert len(units) == len(state.units) > 0
    result = _verify(tmp_path / "root", _root_with(tmp_path, units))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_check_fails_when_a_required_unit_is_missing(tmp_path: Path) -> None:
    """Proves the verification above can fail: drop the tunnel the pollers require."""
    state = desired_state(example_fleet()).hosts["worker-node-1"]
    units = [f for f in state.files if f.path.endswith("-poller.service")]
    result = _verify(tmp_path / "root", _root_with(tmp_path, units))
    assert result.returncode != 0
    assert "fleet-tunnel.service" in result.stderr


def test_the_check_reports_an_unknown_directive(tmp_path: Path) -> None:
    state = desired_state(example_fleet()).hosts["broker-host"]
    unit = next(f for f in state.files if f.path.endswith(".service"))
    broken = FileSpec(unit.path, unit.content.replace(b"[Service]\n", b"[Service]\nBogus=1\n"))
    result = _verify(tmp_path / "root", _root_with(tmp_path, [broken]))
    assert "Bogus" in result.stderr
