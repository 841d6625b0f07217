"""How `fleetctl up` starts each poller: its unit's environment exactly, remapped; why a worker
cannot start here; and the supervision of a poller that keeps exiting."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import pytest

from fleetctl.local.children import CRASH_LOOP_EXITS, Child
from fleetctl.local.server import local_fleet
from fleetctl.local.state import StateDir
from fleetctl.local.workers import SYSTEMD_PATH, Launch, launch, missing
from fleetctl.reconcile.desired.poller_env import poller_unit_environment
from tests.support.example import example_fleet


def test_the_poller_gets_its_units_environment_with_local_paths(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    fleet = local_fleet(example_fleet(), state, port=41234)
    worker = fleet.worker("cmd-wordcount-01")
    assert worker is not None
    base = tmp_path / "workers" / worker.id
    creds = tmp_path / "w.creds"
    env = dict(launch(fleet, worker, base, creds).env)
    unit = dict(poller_unit_environment(fleet, worker))
    assert set(env) - set(unit) <= {"PATH", "USER", "LOGNAME"}
    assert env["PATH"] == SYSTEMD_PATH
    changed = {k: (unit[k], env[k]) for k in unit if unit[k] != env[k]}
    assert changed == {
        "NATS_CREDS": ("/etc/fleet/creds/cmd-wordcount-01.creds", str(creds)),
        "HOME": ("/var/lib/fleet/cmd-wordcount-01", str(base)),
        "WORK_BASE": ("/var/lib/fleet/cmd-wordcount-01", str(base)),
    }
    assert env["NATS_URL"] == "nats://127.0.0.1:41234"
    assert env["COMMAND_ARGV"] == '["wc", "-w"]'


def test_a_worker_whose_cli_is_missing_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = example_fleet()
    claude = fleet.worker("cc-go-dev-01")
    codex = fleet.worker("codex-py-dev-01")
    wc = fleet.worker("cmd-wordcount-01")
    assert claude is not None and codex is not None and wc is not None
    assert missing(dataclasses.replace(claude, bin="/nonexistent/claude", cli=None)) == (
        "/nonexistent/claude not found (install Claude Code, or set bin:)"
    )
    assert missing(dataclasses.replace(codex, bin="/nonexistent/codex", cli=None)) == (
        "/nonexistent/codex not found (install the Codex CLI, or set bin:)"
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty CLI cache
    assert missing(codex) == (
        "@openai/codex@0.171.0 not found in the CLI cache "
        "(`fleetctl up --install-clis` fetches it with npm, or set bin:)"
    )
    assert missing(wc, path="/nonexistent") == "wc not found (install it, or change command:)"
    assert missing(wc) is None
    no_env = dataclasses.replace(
        fleet.workers[0], bin=sys.executable, cli=None, env_file="/nonexistent.env"
    )
    assert missing(no_env) == (
        "env file /nonexistent.env not readable (create it, or remove env_file:)"
    )


def test_a_poller_that_keeps_exiting_is_restarted_and_its_crash_loop_reported(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    spec = Launch("w", ("/bin/sh", "-c", "exit 3"), (("PATH", SYSTEMD_PATH),), tmp_path / "w")
    child = Child(spec, tmp_path / "w.log", lambda _, line: said.append(line))
    child.start()
    deadline = time.monotonic() + 20
    while child.restarts < CRASH_LOOP_EXITS and time.monotonic() < deadline:
        child.poll(time.monotonic())
        time.sleep(0.05)
    child.stop(1)
    assert child.restarts >= CRASH_LOOP_EXITS
    assert said[0].startswith("supervisor: exited with 3 after ")
    assert said[1].startswith("supervisor: exited with 3 after ")
    assert said[2].startswith(
        f"supervisor: crash loop: exited {CRASH_LOOP_EXITS} times in 60 s (last exit code 3)"
    )
    assert child.in_crash_loop


def test_install_clis_fetches_each_missing_pinned_cli_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up --install-clis`: every pinned CLI an enabled (or --only) worker needs and the
    cache lacks, once per package and version (npm itself is the contract tests' part)."""
    from fleetctl.artifacts import clicache
    from fleetctl.cli import up

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty CLI cache
    asked: list[str] = []
    monkeypatch.setattr(
        clicache, "install", lambda cli, cache=None: asked.append(f"{cli.package}@{cli.version}")
    )
    up._install_clis(example_fleet(), ())
    assert sorted(asked) == [
        "@anthropic-ai/claude-code@2.1.197",
        "@google/gemini-cli@0.61.0",
        "@openai/codex@0.171.0",
    ]
    asked.clear()
    up._install_clis(example_fleet(), ("codex-py-dev-01",))
    assert asked == ["@openai/codex@0.171.0"]
