"""`fleetctl init`: the fleet.yaml it writes is valid on this machine with no servers.yaml, and
stays valid with every commented example of an LLM backend uncommented (so the examples cannot
rot); an existing fleet.yaml is never replaced without --force."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from fleetctl.cli.main import cli
from fleetctl.config.loader import load_fleet
from fleetctl.config.thismachine import LOCAL_SERVERS


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="fleetctl")
    return result.exit_code, result.output


def test_init_writes_a_fleet_that_runs_here_with_every_example_valid(tmp_path: Path) -> None:
    code, said = _run("init", str(tmp_path / "fleet"))
    assert code == 0, said
    assert f"Wrote {tmp_path}/fleet/fleet.yaml" in said
    written = tmp_path / "fleet" / "fleet.yaml"
    fleet = load_fleet(written, LOCAL_SERVERS)
    assert [w.id for w in fleet.workers] == ["cmd-wordcount-01", "cmd-keywords-01"]
    assert {w.host for w in fleet.workers} == {"local"}

    everything = tmp_path / "all.yaml"
    everything.write_text(re.sub(r"(?m)^  # ", "  ", written.read_text()))
    all_of_them = load_fleet(everything, LOCAL_SERVERS)
    assert sorted({w.llm for w in all_of_them.workers}) == [
        "claude-code", "codex", "command", "gemini", "zai",
    ]  # fmt: skip
    assert len(all_of_them.workers) == 7


def test_init_never_replaces_a_fleet_without_force(tmp_path: Path) -> None:
    mine = tmp_path / "fleet.yaml"
    mine.write_text("mine\n")
    code, said = _run("init", str(tmp_path))
    assert code == 1 and "already exists: nothing was written (--force replaces it)" in said
    assert mine.read_text() == "mine\n"
    assert _run("init", str(tmp_path), "--force")[0] == 0
    assert "cmd-wordcount-01" in mine.read_text()
