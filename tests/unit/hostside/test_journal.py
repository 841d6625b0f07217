"""The one journalctl command: built by the agent's `journal_argv`, run by the agent on a
host (why a unit failed), by apply's check of the units it started and by `fleetctl logs`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from fleetctl.hostside import source
from fleetctl.hostside.agent import journal_argv
from fleetctl.reconcile import rollout
from fleetctl.reconcile.sessions import Session
from fleetctl.transport.base import Completed, Held, LineHandler, Transport, TransportError
from tests.support.example import example_fleet


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


class _Scripted(Transport):
    """A stand-in transport: answers each argv from a script, records what ran."""

    name = "scripted"

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.ran: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        stdin: bytes = b"",
        *,
        timeout: float | None = None,
        on_line: LineHandler | None = None,
    ) -> Completed:
        self.ran.append(list(argv))
        return Completed(0, self.answers.get(argv[0], b""), b"")

    def put(self, local: Path, remote: str) -> None:
        raise AssertionError("nothing is copied")

    def hold(self, argv: Sequence[str]) -> Held:
        raise AssertionError("nothing is held")

    def forward(self, host: str, port: int) -> AbstractContextManager[int]:
        raise AssertionError("nothing is forwarded")


def test_apply_reads_the_last_lines_of_a_unit_that_did_not_stay_up_with_it() -> None:
    host = example_fleet().hosts[0]
    transport = _Scripted({"systemctl": b"active\nfailed\n", "journalctl": b"boom\n"})
    session = Session(host, transport)
    with pytest.raises(TransportError) as failed:
        rollout._check_started(session, ["b.service", "a.service"], 0, rollout.Reporter())
    assert (
        failed.value.message == "a.service is failed 0 s after it was started; its last log:\nboom"
    )
    assert transport.ran == [
        ["systemctl", "is-active", "b.service", "a.service"],
        ["journalctl", "-u", "a.service", "-o", "cat", "--no-pager", "-n", "10"],
    ]
