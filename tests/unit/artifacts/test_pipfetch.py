"""pip run for a host: its failures boiled down to one line a human can act on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetctl.artifacts import wheelhouse
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target

HOST = Target(python="3.11", platform="linux-x86_64", libc="glibc-2.36")


def _failing_run(output: str, command: str) -> object:
    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if command not in cmd:
            return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=output)

    return run


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        (
            "ERROR: Could not find a version that satisfies the requirement nkeys==0.2.1\n",
            "pip wheel failed: a pinned dependency is not on the package index",
        ),
        (
            "ERROR: Failed building wheel for nkeys\n",
            "pip wheel failed: cannot build a wheel",
        ),
        (
            "WARNING: Retrying ... NewConnectionError(...)\n"
            "ERROR: Could not find a version that satisfies the requirement nkeys==0.2.1\n",
            "cannot reach the package index",
        ),
        (
            "ERROR: Could not find a version that satisfies the requirement pynacl\n"
            "ERROR: No matching distribution found for pynacl\n",
            "no wheel for Python 3.11 on linux-x86_64",
        ),
        ("/usr/bin/python: No module named pip\n", "pip is not installed"),
        ("ERROR: something else entirely\n", "something else entirely"),
    ],
)
def test_pip_failures_become_one_actionable_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, output: str, needle: str
) -> None:
    command = "wheel" if needle.startswith("pip wheel") else "download"
    monkeypatch.setattr(subprocess, "run", _failing_run(output, command))
    with pytest.raises(ArtifactError, match=needle) as caught:
        wheelhouse.build(HOST, tmp_path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("pip ")
    assert not (tmp_path / "builds").exists()
