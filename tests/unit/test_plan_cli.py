"""`fleetctl plan --dry-run`, `render` and `validate` on the example fleet, through click."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetctl.cli.main import cli
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS


def run(*args: str) -> Result:
    base = ["-f", str(EXAMPLE_FLEET), "-s", str(EXAMPLE_SERVERS)]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_offline_plan_lists_every_host_and_ends_with_the_summary() -> None:
    result = run("plan", "--dry-run")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "Plan: 46 to add, 0 to change, 0 to destroy."
    for host in ("broker-host  192.0.2.10", "worker-node-1  192.0.2.11", "worker-node-2"):
        assert any(line.startswith(host) for line in lines), host
    unit_line = next(line for line in lines if "cc-go-dev-01-poller.service" in line)
    assert unit_line.split()[:2] == ["+", "file"]
    assert "0644  root:root" in unit_line and "KiB" in unit_line
    assert "· worker cc-haiku-multi-01 is disabled: not deployed" in result.stdout


def test_offline_plan_is_deterministic() -> None:
    assert run("plan", "--dry-run").stdout == run("plan", "--dry-run").stdout


def test_worker_narrows_to_the_worker_and_what_its_host_shares() -> None:
    result = run("plan", "--dry-run", "--worker", "cc-go-dev-01")
    assert result.exit_code == 0
    out = result.stdout
    assert "cc-go-dev-01-poller.service" in out
    assert "fleet-tunnel.service" in out
    assert "consumer AF_TASKS/worker-cc-go-dev-01" in out
    assert "codex-py-dev-01" not in out and "worker-node-2" not in out
    assert "stream AF_TASKS" not in out
    assert "package fleet-poller" in out and "dir /etc/fleet/tunnel" in out
    assert out.strip().splitlines()[-1] == "Plan: 11 to add, 0 to change, 0 to destroy."


def test_host_narrows_to_that_host() -> None:
    out = run("plan", "--dry-run", "--host", "worker-node-2").stdout
    assert "worker-node-2" in out and "worker-node-1" not in out and "broker-host" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--worker", "cc-go-dev-1"],
            "error: unknown worker 'cc-go-dev-1' (did you mean 'cc-go-dev-01'?)",
        ),
        (
            ["--host", "worker-node3"],
            "error: unknown host 'worker-node3' (did you mean 'worker-node-",
        ),
    ],
)
def test_an_unknown_name_is_an_error_not_an_empty_plan(args: list[str], message: str) -> None:
    result = run("plan", "--dry-run", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_disabled_worker_plan_says_so() -> None:
    result = run("plan", "--dry-run", "--worker", "cc-haiku-multi-01")
    assert result.exit_code == 0
    assert "worker cc-haiku-multi-01 is disabled: not deployed" in result.stdout
    assert result.stdout.strip().endswith("Plan: 0 to add, 0 to change, 0 to destroy.")


def test_json_plan_follows_the_documented_schema() -> None:
    data = json.loads(run("plan", "--dry-run", "--json").stdout)
    assert data["format_version"] == 1
    assert data["mode"] == "offline"
    assert data["summary"] == {"add": 46, "change": 0, "destroy": 0}
    assert len(data["fleet_revision"]) == 64
    changes = [c for h in data["hosts"] for c in h["changes"]]
    assert len(changes) == 46
    unit = next(c for c in changes if c["name"].endswith("cc-go-dev-01-poller.service"))
    assert unit["action"] == "create" and unit["type"] == "file"
    assert unit["attributes"]["mode"] == "0644" and unit["worker"] == "cc-go-dev-01"
    assert "content" not in unit


def test_diff_shows_contents() -> None:
    out = run("plan", "--dry-run", "--diff", "--worker", "cmd-docs-01").stdout
    assert "+Environment=MODEL_BACKEND=command" in out
    assert "+++ b/etc/systemd/system/cmd-docs-01-poller.service" in out


def test_apply_needs_a_target_and_a_confirmation() -> None:
    result = run("apply")
    assert result.exit_code == 1
    assert "use --all, or --worker ID" in result.stderr
    result = run("apply", "--all")  # CliRunner's stdin is not a terminal
    assert result.exit_code == 1
    assert "add --yes" in result.stderr


def test_render_writes_the_golden_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("render", "--out", str(out)).exit_code == 0
    golden = Path(__file__).resolve().parents[1] / "golden" / "example"
    mine = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    theirs = {str(p.relative_to(golden)): p.read_bytes() for p in golden.rglob("*") if p.is_file()}
    assert mine == theirs


def test_render_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = run("render", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_validate_reports_a_summary() -> None:
    result = run("validate")
    assert result.exit_code == 0
    assert "valid (6 workers, 5 enabled, on 3 hosts)" in result.stdout


def test_validate_json() -> None:
    data = json.loads(run("validate", "--json").stdout)
    assert data == {
        "format_version": 1,
        "valid": True,
        "problems": [],
        "workers": 6,
        "enabled": 5,
        "hosts": 3,
    }
