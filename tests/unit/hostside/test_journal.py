"""The one journalctl command: built by the agent's `journal_argv`, run by the agent on a
host (why a unit failed), by apply's check of the units it started (asserted in
tests/unit/reconcile/test_rollout.py) and by `fleetctl logs`."""

from __future__ import annotations

from typing import Any

from fleetctl.hostside import source
from fleetctl.hostside.agent import journal_argv


def test_the_journal_command_on_the_host() -> None:
    assert journal_argv("w1-poller.service", 50, True, 1700000000.5) == [
        "journalctl", "-u", "w1-poller.service", "-o", "cat", "--no-pager", "-n", "50",
        "--since=@1700000000", "-f",
    ]  # fmt: skip
    assert journal_argv("w1-poller.service", 5, False, None) == [
        "journalctl", "-u", "w1-poller.service", "-o", "cat", "--no-pager", "-n", "5",
    ]  # fmt: skip


def test_the_agent_reads_a_failed_units_last_line_with_it() -> None:
    """As shipped: the agent's text run as the host's interpreter runs it."""
    agent: dict[str, Any] = {"__name__": "agent"}
    exec(compile(source("agent"), "agent.py", "exec"), agent)
    ran: list[list[str]] = []

    def spawn(argv: list[str], timeout: float, merge_stderr: bool) -> tuple[int, bytes]:
        ran.append(argv)
        return 0, b"starting\nexec failed: permission denied\n"

    agent["spawn"] = spawn
    assert agent["_last_log_line"]("x.service") == "exec failed: permission denied"
    assert ran == [
        ["journalctl", "-u", "x.service", "-o", "cat", "--no-pager", "-n", "1"],
    ]
