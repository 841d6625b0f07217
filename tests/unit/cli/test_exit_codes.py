"""The exit-code contract, for every command `fleetctl --help` lists (and every subcommand):
0 ok, 1 any error (usage errors too: click's own code for them is 2), and 2 only for
`plan --detailed-exitcode` with changes pending.

The checks that need nothing but the command's parameters (help, a mistyped option, a bad
value for each option with a checked type) are derived from the commands themselves, so a new
command is covered the day it is added. Success and a domain error need real arguments: the
`ROWS` table gives them, and a command without a row fails `test_every_command_has_a_row`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fleetctl.cli.main import cli
from tests.support.commands import all_commands
from tests.support.example import example_fleet_dir

REPO = Path(__file__).resolve().parents[3]
FLEETCTL = Path(sys.executable).parent / "fleetctl"
CHANGES_PENDING = 2
WORKER = "cc-go-dev-01"


COMMANDS = all_commands()
LEAVES = {path: c for path, c in COMMANDS.items() if not isinstance(c, click.Group)}


def _name(path: tuple[str, ...]) -> str:
    return " ".join(path)


@dataclass(frozen=True)
class Row:
    """How one command succeeds (after `setup`, in the same directory) and how it fails (in a
    fresh directory: no credential store yet). `ok_elsewhere` names the test that asserts
    success where that needs real hosts."""

    ok: tuple[str, ...] = ()
    error: tuple[str, ...] = ()
    setup: tuple[tuple[str, ...], ...] = ()
    ok_elsewhere: str = ""


INIT = ("creds", "init")
ISSUED = (INIT, ("creds", "issue", "--all"))
E2E = "tests/e2e/test_reconcile.py::"
TASKS = "tests/integration/test_task_commands.py::"
ROWS: dict[tuple[str, ...], Row] = {
    ("init",): Row(ok=("init", "fresh"), error=("init", ".")),  # here: the example fleet
    ("validate",): Row(ok=("validate",), error=("-f", "missing.yaml", "validate")),
    ("plan",): Row(
        ok=("plan", "--dry-run"),
        error=("plan", "--dry-run", "--worker", "no-such-worker"),
        ok_elsewhere=E2E + "test_plan_right_after_apply_has_no_changes",
    ),
    ("apply",): Row(
        # Without a terminal to confirm on and without --yes, apply refuses.
        error=("apply", "--all"),
        ok_elsewhere=E2E + "test_first_apply_brings_up_the_broker_tunnels_and_every_poller",
    ),
    ("rollback",): Row(
        error=("rollback", "--worker", "no-such-worker"),
        ok_elsewhere="tests/e2e/test_rollout.py::"
        "test_rollback_shows_its_plan_then_takes_the_host_back",
    ),
    ("decommission",): Row(
        # A host fleetctl does not remember: nothing to do. One still in servers.yaml: refused.
        ok=("decommission", "no-such-host"),
        error=("decommission", "broker-host", "--yes"),
    ),
    ("render",): Row(
        ok=("render", "--out", "out"), error=("-s", "missing.yaml", "render", "--out", "out")
    ),
    ("schema",): Row(ok=("schema", "fleet"), error=("schema", "workers")),
    ("creds", "init"): Row(ok=INIT, error=("-f", "missing.yaml", *INIT)),
    ("creds", "issue"): Row(
        ok=("creds", "issue", "--all"), error=("creds", "issue", "--all"), setup=(INIT,)
    ),
    ("creds", "revoke"): Row(
        ok=("creds", "revoke", "--worker", WORKER),
        error=("creds", "revoke", "--worker", "no-such-worker"),
        setup=ISSUED,
    ),
    ("creds", "rotate"): Row(
        ok=("creds", "rotate", "--worker", WORKER),
        error=("creds", "rotate", "--worker", "no-such-worker"),
        setup=ISSUED,
    ),
    ("creds", "list"): Row(ok=("creds", "list"), error=("creds", "list"), setup=(INIT,)),
    ("creds", "backup"): Row(
        ok=("creds", "backup", "--out", "backup.tar"),
        error=("creds", "backup", "--out", "backup.tar"),
        setup=(INIT,),
    ),
    ("creds", "check"): Row(ok=("creds", "check"), error=("creds", "check"), setup=ISSUED),
    ("creds", "server-config"): Row(
        ok=("creds", "server-config"), error=("creds", "server-config"), setup=(INIT,)
    ),
    ("up",): Row(
        error=("up", "--only", "no-such-worker"),
        ok_elsewhere="tests/integration/test_local_up.py::test_up_runs_every_worker_that_can_run_here",
    ),
    ("down",): Row(ok=("down",), error=("-f", "missing.yaml", "down")),
    ("wheelhouse", "build"): Row(
        # Success needs the package index: the integration test builds and installs one.
        error=("wheelhouse", "build", "--out", "out", "--python", "3.11", "--platform", "aix"),
        ok_elsewhere="tests/integration/test_wheelhouse_install.py::"
        "test_a_wheelhouse_built_elsewhere_installs_where_the_index_is_out_of_reach",
    ),
    # The task commands need a running bus: their successes are the integration tests'.
    ("task", "send"): Row(
        error=("task", "send", "hello", "--to", "no-such-worker"),
        ok_elsewhere=TASKS
        + "test_fan_out_runs_once_on_every_target_and_the_same_id_again_runs_nothing",
    ),
    ("task", "cancel"): Row(
        error=("task", "cancel", "not.a.task.id", "--server", "nats://127.0.0.1:1"),
        ok_elsewhere="tests/integration/test_new_user_path.py::"
        "test_cancel_drops_a_queued_task_unrun_and_stops_a_running_ones_process_tree",
    ),
    ("results",): Row(
        error=("results", "not.a.task.id", "--server", "nats://127.0.0.1:1"),
        ok_elsewhere=TASKS
        + "test_fan_out_runs_once_on_every_target_and_the_same_id_again_runs_nothing",
    ),
    ("tasks",): Row(
        error=("tasks", "--since", "soon"),
        ok_elsewhere=TASKS
        + "test_fan_out_runs_once_on_every_target_and_the_same_id_again_runs_nothing",
    ),
    ("status",): Row(
        error=("status", "--no-hosts", "--server", "nats://127.0.0.1:1"),
        ok_elsewhere="tests/integration/test_status.py::"
        "test_a_stopped_worker_a_backlog_and_a_dead_letter_each_need_a_human",
    ),
    ("logs",): Row(
        error=("logs", "no-such-worker"),
        ok_elsewhere="tests/integration/test_local_status_logs.py::"
        "test_status_and_logs_of_a_local_fleet",
    ),
    ("costs",): Row(
        error=("costs", "--since", "soon"),
        ok_elsewhere="tests/integration/test_costs.py::"
        "test_the_ledger_totals_are_the_sum_of_the_priced_results",
    ),
    ("dashboard",): Row(
        error=("dashboard", "--bind", "0.0.0.0", "--token-file", "missing-token"),
        ok_elsewhere="tests/integration/test_dashboard.py::"
        "test_the_api_answers_what_the_cli_prints",
    ),
    **{
        ("dead", sub): Row(
            error=("dead", sub, *args, "--server", "nats://127.0.0.1:1"),
            ok_elsewhere=TASKS + "test_dead_letters_are_listed_shown_replayed_elsewhere_and_purged",
        )
        for sub, args in (("list", ()), ("show", ("1",)), ("replay", ("1",)), ("purge", ("--yes",)))
    },
}


@pytest.fixture
def fleet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example fleet, with its credential store inside the test's directory."""
    example_fleet_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FLEETCTL_")]:
        monkeypatch.delenv(name)
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="fleetctl", catch_exceptions=False)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def _bad_values(command: click.Command) -> Iterator[tuple[str, ...]]:
    """Arguments with a value its type refuses, for every parameter with a checked type."""
    for param in command.params:
        kind = param.type
        if isinstance(kind, click.Path) and kind.exists:
            value = "no-such-file"
        elif isinstance(kind, click.IntRange | click.FloatRange) and kind.min is not None:
            value = str(kind.min - 1)
        elif isinstance(kind, click.Choice):
            value = "no-such-choice"
        else:
            continue
        if isinstance(param, click.Argument):
            yield (value,)
        elif isinstance(param, click.Option) and not param.is_flag:
            yield (param.opts[0], value)


@pytest.mark.parametrize("path", list(COMMANDS), ids=_name)
def test_help_exits_0(path: tuple[str, ...], fleet_dir: Path) -> None:
    assert run(*path, "--help")[0] == 0


@pytest.mark.parametrize("path", list(COMMANDS), ids=_name)
def test_a_mistyped_option_exits_1(path: tuple[str, ...], fleet_dir: Path) -> None:
    code, text = run(*path, "--wroker", "x")
    assert code == 1, text
    assert "No such option: --wroker" in text or "No such option '--wroker'" in text, text


@pytest.mark.parametrize("path", list(COMMANDS), ids=_name)
def test_every_bad_option_value_exits_1(path: tuple[str, ...], fleet_dir: Path) -> None:
    for bad in _bad_values(COMMANDS[path]):
        code, text = run(*path, *bad)
        assert code == 1, f"fleetctl {_name(path)} {' '.join(bad)}: exit {code}\n{text}"
        assert "Invalid value" in text, text


def test_a_bad_global_option_and_an_unknown_command_exit_1(fleet_dir: Path) -> None:
    assert run("--bogus", "validate")[0] == 1
    assert run("no-such-command")[0] == 1
    assert run()[0] == 1  # no command: help, as a usage error
    assert run("creds")[0] == 1


def test_every_command_has_a_row() -> None:
    missing = [_name(p) for p in LEAVES if p not in ROWS]
    assert not missing, f"add a row to ROWS for: {missing}"
    assert not [_name(p) for p in ROWS if p not in LEAVES], "ROWS names a command that is gone"
    for path, row in ROWS.items():
        assert row.ok or row.ok_elsewhere, f"{_name(path)}: say how it succeeds"
        if row.ok_elsewhere:
            file, test = row.ok_elsewhere.split("::")
            assert f"def {test}(" in (REPO / file).read_text(), f"{row.ok_elsewhere} is gone"


@pytest.mark.parametrize("path", [p for p in LEAVES if p in ROWS and ROWS[p].ok], ids=_name)
def test_success_exits_0(path: tuple[str, ...], fleet_dir: Path) -> None:
    row = ROWS[path]
    for step in row.setup:
        assert run(*step)[0] == 0, step
    code, text = run(*row.ok)
    assert code == 0, text


@pytest.mark.parametrize("path", [p for p in LEAVES if p in ROWS], ids=_name)
def test_an_error_exits_1(path: tuple[str, ...], fleet_dir: Path) -> None:
    code, text = run(*ROWS[path].error)
    assert code == 1, text
    assert "Traceback" not in text


def test_detailed_exitcode_2_only_for_changes_pending(fleet_dir: Path) -> None:
    assert run("plan", "--dry-run", "--detailed-exitcode")[0] == CHANGES_PENDING
    assert run("plan", "--dry-run")[0] == 0
    assert run("plan", "--dry-run", "--detailed-exitcode", "--worker", "no-such")[0] == 1
    # The errors CI sees most, which click alone would report as "changes pending":
    assert run("plan", "--detailed-exitcode", "--wroker", WORKER)[0] == 1
    assert run("plan", "--detailed-exitcode", "--ssh-config", "no-such-file")[0] == 1
    assert run("plan", "--detailed-exitcode", "--parallel", "0")[0] == 1
    assert run("-f", "missing.yaml", "plan", "--dry-run", "--detailed-exitcode")[0] == 1


def test_the_console_script_exits_1_on_a_usage_error(fleet_dir: Path) -> None:
    done = subprocess.run(
        [str(FLEETCTL), "plan", "--detailed-exitcode", "--wroker", WORKER],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
