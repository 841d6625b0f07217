"""`fleetctl apply`'s rollout options, refused before any host is contacted when they make no
sense, and the plan's schedule as `plan` shows it (text and JSON) from fleet.yaml `rollout:`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetctl.cli.main import cli
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS


@pytest.fixture
def fleet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("FLEETCTL_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "servers.yaml").write_text(EXAMPLE_SERVERS.read_text())
    (tmp_path / "fleet.yaml").write_text(EXAMPLE_FLEET.read_text())
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="fleetctl", catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("--batch", "0"),
            "error: --batch '0' is less than 1 (write a number of hosts like 2, or a share of "
            'them like "25%")',
        ),
        (
            ("--batch", "half"),
            "error: --batch 'half' is not a number of hosts or a share",
        ),
        (
            ("--no-drain", "--drain-timeout", "5m"),
            "error: --no-drain and --drain-timeout contradict each other (use one of them)",
        ),
        (("--drain-timeout", "soon"), "error: --drain-timeout 'soon' is not a duration"),
    ],
)
def test_a_rollout_option_that_makes_no_sense_is_refused(
    fleet_dir: Path, args: tuple[str, ...], said: str
) -> None:
    code, output = run("apply", "--all", "--yes", *args)
    assert code == 1
    assert said in output


def test_a_confirm_timeout_shorter_than_the_checks_is_refused(fleet_dir: Path) -> None:
    fleet = fleet_dir / "fleet.yaml"
    fleet.write_text(fleet.read_text() + "\nrollout: {confirm_timeout: 30s}\n")
    code, output = run("apply", "--all", "--yes", "--settle", "5")
    assert code == 1
    assert (
        "error: rollout.confirm_timeout (30 s) is too short for --settle 5: a host would roll "
        "back before apply confirmed it (set rollout.confirm_timeout above 30 s, or a shorter "
        "--settle)"
    ) in output


def test_the_plan_shows_the_batches_fleet_yaml_asks_for(fleet_dir: Path) -> None:
    fleet = fleet_dir / "fleet.yaml"
    fleet.write_text(fleet.read_text() + "\nrollout: {batch: 1, pause: 30s}\n")
    result = CliRunner().invoke(cli, ["plan", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0
    assert (
        "Rollout: broker-host first; then 2 worker host(s) in 2 batch(es) of 1, 30s apart; "
        "stops once more than 0 fail:\n"
        "  batch 1: worker-node-1\n"
        "  batch 2: worker-node-2\n"
    ) in result.stdout
    shown = json.loads(CliRunner().invoke(cli, ["plan", "--dry-run", "--json"]).stdout)
    assert shown["rollout"] == {
        "first": ["broker-host"],
        "batches": [["worker-node-1"], ["worker-node-2"]],
        "batch": "1",
        "max_failed": 0,
        "pause": 30,
    }


def test_without_batches_the_text_plan_says_nothing_of_them(fleet_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "--dry-run"], catch_exceptions=False)
    assert "Rollout:" not in result.stdout
    shown = json.loads(CliRunner().invoke(cli, ["plan", "--dry-run", "--json"]).stdout)
    assert shown["rollout"]["batches"] == [["worker-node-1", "worker-node-2"]]
    assert shown["rollout"]["batch"] is None
