"""A hostile fleet.yaml (a pull request) against the commands that review it, run again after
issue #21 (docs/security.md, "Attack replay"): nothing it names is run on the machine that
reviews it, whatever key names it; and the credential store it names is the one deployed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nsc.authority import Authority
from nsc.store import NscDirs
from tests.support.example import EXAMPLE_SERVERS

pytestmark = pytest.mark.integration
FLEETCTL = str(Path(sys.executable).parent / "fleetctl")
# Programs a review might be tricked into running: those fleet.yaml names, and the tools
# fleetctl itself could reach for on its behalf (npm for an unpinned CLI version, node, git).
STANDINS = ("evil-llm", "evil-cmd", "evil-on-path", "npm", "npx", "node", "git", "nats-server")


def _standins(bin_dir: Path, marks: Path) -> None:
    bin_dir.mkdir()
    for name in STANDINS:
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho {name} "$@" >> {marks}\necho 1.0.0\n')
        path.chmod(0o755)


def _run(
    directory: Path, bin_dir: Path, *args: str, config: str = "fleet.yaml"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(directory / "home"),
        "XDG_CONFIG_HOME": str(directory / "config"),
        "XDG_CACHE_HOME": str(directory / "cache"),
        "XDG_DATA_HOME": str(directory / "data"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [FLEETCTL, "-f", config, "-s", "servers.yaml", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_review_command_runs_a_program_fleet_yaml_names(tmp_path: Path) -> None:
    """Item 2's variation: an llm's `bin:`, a worker's `command:` by path and by a name on
    PATH, and a CLI `version:` fleetctl does not pin (which apply would fetch with npm).
    validate, render, plan --dry-run, a live plan of every host (this machine, over the
    local transport) and status run none of them, nor npm, npx, node or git."""
    bin_dir, marks = tmp_path / "bin", tmp_path / "ran"
    _standins(bin_dir, marks)
    fleet = {
        "version": 1,
        "llms": {
            "evil": {"backend": "claude", "bin": str(bin_dir / "evil-llm")},
            "newer": {"backend": "codex", "version": "9.9.9"},
        },
        "workers": [
            {"worker_id": "w-llm", "llm": "evil", "host": "node-1"},
            {
                "worker_id": "w-cmd",
                "llm": "command",
                "command": [str(bin_dir / "evil-cmd"), "--x"],
                "host": "node-1",
            },
            {
                "worker_id": "w-path",
                "llm": "command",
                "command": ["evil-on-path"],
                "host": "node-1",
            },
            {"worker_id": "w-newer", "llm": "newer", "host": "node-1"},
        ],
    }
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    servers = {
        "version": 1,
        "servers": [
            {"name": "broker", "address": "localhost", "roles": ["broker-host"]},
            {"name": "node-1", "address": "localhost", "roles": ["worker-host"]},
        ],
    }
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump(servers))
    for args in (
        ["validate"],
        ["render", "--out", "out"],
        ["plan", "--dry-run"],
        ["plan"],
        ["plan", "--host", "node-1"],
        ["plan", "--host", "broker"],
        ["status"],
    ):
        done = _run(tmp_path, bin_dir, *args)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.returncode == (1 if args == ["status"] else 0), (args, done)
        assert not marks.exists(), f"`fleetctl {' '.join(args)}` ran {marks.read_text()}"
    unit = tmp_path / "out" / "node-1" / "etc" / "systemd" / "system" / "w-cmd-poller.service"
    assert unit.is_file()  # rendered, named, never run


def test_the_credential_store_fleet_yaml_names_is_the_one_deployed(tmp_path: Path) -> None:
    """A residual (docs/security.md, "A hostile fleet.yaml"): `creds.stores_dir` and
    `keys_dir` are fleet.yaml's, relative to it, so a pull request can bring a store of its
    own, keys and all, and point the fleet at it: what fleetctl renders for the broker
    trusts that store's operator. Nothing is run or written there by the review commands;
    the change is for the reviewer to see, in fleet.yaml and in the plan (a new broker
    config, every worker's credentials). If this ever fails, update docs/security.md."""
    bin_dir, marks = tmp_path / "bin", tmp_path / "ran"
    _standins(bin_dir, marks)
    shutil.copy(EXAMPLE_SERVERS, tmp_path / "servers.yaml")
    theirs = Authority.create(NscDirs(tmp_path / "pr" / "stores", tmp_path / "pr" / "keys"))
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "pr").rglob("*"))
    fleet = {
        "version": 1,
        "creds": {"stores_dir": "pr/stores", "keys_dir": "pr/keys"},
        "workers": [{"worker_id": "w1", "llm": "claude-code", "host": "worker-node-1"}],
    }
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    done = _run(tmp_path, bin_dir, "render", "--out", "out")
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "out" / "broker-host" / "etc" / "nats" / "nats-server.conf").read_text()
    assert f"operator: {theirs.operator_jwt}" in conf
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "pr").rglob("*")) == before
    assert not marks.exists()
