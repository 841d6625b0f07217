"""The delivery flow against a bus in memory: exactly which bus operations each way a task
can end produces, in order, as data. The CLI is the real runner with the STAND-IN claude CLI
(tests/support/standin_cli: not the real one); only the bus is a fake, since the flow's
decisions are pure logic. The same flow on a real nats-server: tests/integration/
test_poller_delivery.py, test_poller_lease.py, test_budgets.py."""

from __future__ import annotations

import ast
import asyncio
import base64
import dataclasses
import json
import shutil
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from poller import config, delivery, records
from poller.cancel import Cancels
from poller.delivery import Delivery
from poller.heartbeat import Stats
from poller.lease import Held, Lease
from poller.logs import Logger
from poller.messages import Delivered
from tests.support import gitrepos
from tests.support.poller_harness import STANDIN, alive, directive, standin_records, started

T = TypeVar("T")
SEQ = 7
COST = 0.0123  # what the stand-in claude CLI reports by default


class FakeBus:
    """The bus as the flow sees it (`delivery.Bus`), in memory. Every request is recorded as
    a tuple; a request named in `fail` raises, as one to a bus that is away would. `held`:
    another poller holds every lease. `stored`: results already on the bus, by task id."""

    def __init__(
        self,
        *,
        fail: tuple[str, ...] = (),
        over: str | None = None,
        held: Held | None = None,
        stored: dict[str, bytes] | None = None,
        cancelled: tuple[str, ...] = (),
    ) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self.fail, self.over, self.held = fail, over, held
        self.stored = dict(stored or {})
        self.dead: list[dict[str, Any]] = []
        self.marks = set(cancelled)  # task ids with a cancel mark for w1

    def _request(self, *op: Any) -> None:
        self.ops.append(op)
        if op[0] in self.fail:
            raise ConnectionError(f"{op[0]}: no responders")

    async def last_result(self, task_id: str) -> bytes | None:
        self._request("last_result", task_id)
        return self.stored.get(task_id)

    async def publish_result(self, task_id: str, data: bytes) -> None:
        self._request("publish_result", task_id, json.loads(data)["status"])
        self.stored[task_id] = data

    async def publish_dead_letter(self, data: bytes) -> None:
        letter = json.loads(data)
        self._request("publish_dead_letter", letter["reason"])
        self.dead.append(letter)

    async def ack(self, d: Delivered) -> None:
        self._request("ack", d.seq)

    async def nak(self, d: Delivered, delay: float | None) -> None:
        self._request("nak", d.seq, delay)

    async def term(self, d: Delivered) -> None:
        self._request("term", d.seq)

    async def in_progress(self, d: Delivered) -> None:
        self._request("in_progress", d.seq)

    async def take_lease(self, task_id: str, stream_seq: int) -> Lease | Held:
        self._request("take_lease", task_id, stream_seq)
        return self.held or Lease(task_id, 1)

    def lease_holder_gone(self, held: Held) -> bool:
        return False

    async def take_over_lease(self, task_id: str, stream_seq: int, held: Held) -> Lease | Held:
        self._request("take_over_lease", task_id, stream_seq)
        return Lease(task_id, 2)

    async def refresh_lease(self, lease: Lease, stream_seq: int) -> bool:
        self._request("refresh_lease", lease.task_id)
        return True

    async def release_lease(self, lease: Lease) -> None:
        self._request("release_lease", lease.task_id)

    async def over_budget(self) -> str | None:
        self._request("over_budget")
        return self.over

    async def add_spend(self, cost_usd: float) -> None:
        self._request("add_spend", cost_usd)

    async def cancelled(self, task_id: str) -> bool:
        self._request("cancelled", task_id)
        return task_id in self.marks


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


def flow(
    work: Path, bus: FakeBus, max_deliver: int = 3, cancels: bool = False, **env: str
) -> Delivery:
    """The flow of worker w1 with the stand-in claude CLI; ack_wait long enough that no
    progress signal falls within a test unless a reconnect asks for one."""
    cfg = config.load(
        {
            "WORKER_ID": "w1",
            "NATS_URL": "nats://127.0.0.1:4222",
            "MODEL_BACKEND": "claude",
            "CLAUDE_BIN": str(STANDIN / "fake-claude"),
            "WORK_BASE": str(work),
            "HOME": str(work),
            "WORKER_LABELS": '{"team": "core"}',
            **env,
        }
    )
    stats = Stats("w1", cfg.backend, cfg.llm, 1)
    log = Logger("error")  # on stderr: pytest shows it with a failure
    marks = Cancels(cfg, log) if cancels else None
    return Delivery(
        cfg, bus, log, stats, ack_wait=600, max_deliver=max_deliver, lease_ttl=1800, cancels=marks
    )


def task(task_id: str = "t1", attempt: int = 1, seq: int = SEQ, **fields: Any) -> Delivered:
    body = {"task_id": task_id, "instructions": "say hi", **fields}
    data = json.dumps(body).encode()
    return Delivered(seq, attempt, "af.task.w1", data)


def raw(data: bytes, attempt: int = 1) -> Delivered:
    return Delivered(SEQ, attempt, "af.task.w1", data)


def result(bus: FakeBus, task_id: str = "t1") -> dict[str, Any]:
    return dict(json.loads(bus.stored[task_id]))


@pytest.fixture(autouse=True)
def _standin_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "standin.jsonl"))


LEASED = [("take_lease", "t1", SEQ), ("last_result", "t1"), ("over_budget",)]


def test_a_completed_task_counts_its_spend_stores_its_result_then_acks(tmp_path: Path) -> None:
    bus = FakeBus()
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    r = result(bus)
    assert (r["status"], r["exit_code"], r["attempt"], r["cost_usd"]) == ("completed", 0, 1, COST)
    assert (r["cost_source"], r["labels"], r["worker_id"]) == ("reported", {"team": "core"}, "w1")
    assert len(standin_records(tmp_path, "start")) == 1


def test_a_failed_cli_is_paid_for_stored_and_acked_like_a_completed_one(tmp_path: Path) -> None:
    bus = FakeBus()
    run(flow(tmp_path, bus).handle(task(instructions=directive(exit=3))))
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "failed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert result(bus)["exit_code"] == 3


def test_a_timed_out_cli_without_a_cost_adds_no_spend(tmp_path: Path) -> None:
    bus = FakeBus()
    d = task(instructions=directive(sleep=20), timeout=0.3)
    run(flow(tmp_path, bus, KILL_GRACE="1").handle(d))
    assert bus.ops == [
        *LEASED,
        ("publish_result", "t1", "timeout"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]


def test_a_result_that_cannot_be_stored_is_paid_for_and_nakd(tmp_path: Path) -> None:
    bus = FakeBus(fail=("publish_result",))
    run(flow(tmp_path, bus, RESULT_STORE_RETRY="0.1").handle(task()))
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("nak", SEQ, 10.0),
        ("release_lease", "t1"),
    ]


def test_a_result_is_retried_until_the_bus_takes_it(tmp_path: Path) -> None:
    bus = FakeBus(fail=("publish_result",))
    d = flow(tmp_path, bus, RESULT_STORE_RETRY="5")
    stored = ("publish_result", "t1", "completed")

    _back_before_the_third_try(d, bus, stored)
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        stored,
        stored,
        stored,
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]


def test_a_result_not_stored_on_the_last_delivery_is_dead_lettered(tmp_path: Path) -> None:
    bus = FakeBus(fail=("publish_result",))
    run(flow(tmp_path, bus, RESULT_STORE_RETRY="0.1").handle(task(attempt=3)))
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("publish_dead_letter", "cannot store the result"),
        ("term", SEQ),
        ("release_lease", "t1"),
    ]
    [letter] = bus.dead
    assert (letter["task_id"], letter["attempt"], letter["stream_seq"]) == ("t1", 3, SEQ)
    assert base64.b64decode(letter["task_b64"]) == task(attempt=3).data


def test_undecodable_input_is_dead_lettered_without_a_lease_or_a_result(tmp_path: Path) -> None:
    bus = FakeBus()
    run(flow(tmp_path, bus).handle(raw(b"{not json")))
    assert bus.ops == [
        ("publish_dead_letter", "not JSON: Expecting property name enclosed in double quotes"),
        ("term", SEQ),
    ]
    assert bus.dead[0]["task_id"] is None


def test_bad_input_with_a_usable_id_gets_a_rejected_result_too(tmp_path: Path) -> None:
    bus = FakeBus()
    run(flow(tmp_path, bus).handle(task(instructions=5)))
    why = "instructions must be a non-empty string"
    assert bus.ops == [
        ("publish_result", "t1", "rejected"),
        ("publish_dead_letter", why),
        ("term", SEQ),
    ]
    r = result(bus)
    assert (r["error"], r["duration_s"], r["labels"]) == (why, 0.0, {"team": "core"})
    assert "exit_code" not in r and r["output"] == "" and r["attempt"] == 1
    assert not standin_records(tmp_path)


def test_no_budget_left_is_a_rejection_under_the_lease(tmp_path: Path) -> None:
    over = "over budget: worker w1 spent 1.00 of its daily_usd 1.00"
    bus = FakeBus(over=over)
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [
        *LEASED,
        ("publish_result", "t1", "rejected"),
        ("publish_dead_letter", over),
        ("term", SEQ),
        ("release_lease", "t1"),
    ]
    assert not standin_records(tmp_path)


def test_a_budget_that_cannot_be_read_gives_the_task_back(tmp_path: Path) -> None:
    bus = FakeBus(fail=("over_budget",))
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [*LEASED, ("nak", SEQ, 10.0), ("release_lease", "t1")]
    assert not standin_records(tmp_path)


def test_a_task_already_done_is_acked_without_running(tmp_path: Path) -> None:
    bus = FakeBus(stored={"t1": b'{"status": "failed"}'})
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [
        ("take_lease", "t1", SEQ),
        ("last_result", "t1"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert not standin_records(tmp_path)


def test_a_rejection_stored_earlier_does_not_count_as_done(tmp_path: Path) -> None:
    bus = FakeBus(stored={"t1": b'{"status": "rejected"}'})
    run(flow(tmp_path, bus).handle(task()))
    assert ("publish_result", "t1", "completed") in bus.ops
    assert len(standin_records(tmp_path, "start")) == 1


def test_a_task_leased_elsewhere_waits_out_the_holders_ttl(tmp_path: Path) -> None:
    bus = FakeBus(held=Held("host-b/42/abc", 7.0))
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [("take_lease", "t1", SEQ), ("nak", SEQ, 7.5)]
    assert not standin_records(tmp_path)


def test_a_lease_that_cannot_be_taken_gives_the_task_back(tmp_path: Path) -> None:
    bus = FakeBus(fail=("take_lease",))
    run(flow(tmp_path, bus, LEASE_RETRY="0.1").handle(task(attempt=3)))
    assert bus.ops == [
        ("take_lease", "t1", SEQ),
        ("publish_dead_letter", "lease: ConnectionError('take_lease: no responders')"),
        ("term", SEQ),
    ]


def test_a_lease_is_asked_for_again_while_the_bus_fails_and_the_task_kept(
    tmp_path: Path,
) -> None:
    """A broker going down fails the lease's write for a few seconds. The delivery is kept
    (not nak'd: a task given back in a failover depends on the consumer's next leader to
    deliver it again, and nats-server was seen not to) and the lease asked for again until
    the bus takes it; then the task runs as any other."""
    bus = FakeBus(fail=("take_lease",))
    d = flow(tmp_path, bus, LEASE_RETRY="5")
    asked = ("take_lease", "t1", SEQ)

    _back_before_the_third_try(d, bus, asked)
    assert bus.ops == [
        asked,
        asked,
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert len(standin_records(tmp_path, "start")) == 1


def test_a_stop_while_the_lease_is_asked_for_again_hands_the_task_back(tmp_path: Path) -> None:
    bus = FakeBus(fail=("take_lease",))
    d = flow(tmp_path, bus, LEASE_RETRY="60")

    async def go() -> None:
        handling = asyncio.create_task(d.handle(task()))
        while not bus.ops:
            await asyncio.sleep(0.01)
        d.hand_back.set()
        await handling

    run(go())
    assert bus.ops == [("take_lease", "t1", SEQ), ("nak", SEQ, None)]
    assert not standin_records(tmp_path)


def test_a_cli_that_cannot_start_gives_the_task_back(tmp_path: Path) -> None:
    bus = FakeBus()
    run(flow(tmp_path, bus, CLAUDE_BIN=str(tmp_path / "no-such-cli")).handle(task()))
    assert bus.ops == [*LEASED, ("nak", SEQ, 10.0), ("release_lease", "t1")]


def test_output_that_cannot_be_read_still_ends_in_a_result_and_an_ack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*_: Any) -> None:
        raise KeyError("a bug reading the output")

    monkeypatch.setattr(records, "ran", bug)
    bus = FakeBus()
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [
        *LEASED,
        ("publish_result", "t1", "failed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    r = result(bus)
    assert r["error"] == "poller error: KeyError('a bug reading the output')"
    assert (r["cost_source"], r["output"], r["exit_code"]) == ("unknown", "", 0)


def test_a_poller_error_once_the_task_is_described_gives_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*_: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(records, "rejected", bug)
    bus = FakeBus(over="over budget")
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [*LEASED, ("release_lease", "t1"), ("nak", SEQ, 10.0)]
    assert not standin_records(tmp_path)


def test_a_poller_error_before_the_task_is_described_is_dead_lettered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*_: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(delivery, "parse_task", bug)
    bus = FakeBus()
    run(flow(tmp_path, bus).handle(task()))
    assert bus.ops == [("publish_dead_letter", "poller error: KeyError('a bug')"), ("term", SEQ)]
    assert bus.dead[0]["task_id"] is None


def test_a_shutdown_releases_the_lease_before_giving_the_task_back(tmp_path: Path) -> None:
    """So the next delivery, at once, finds the lease free (not nak'd for its TTL)."""
    bus = FakeBus()
    d = flow(tmp_path, bus)

    async def go() -> None:
        handling = asyncio.create_task(d.handle(task(instructions=directive(sleep=30))))
        await started(tmp_path)
        handling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handling

    run(go())
    assert bus.ops == [*LEASED, ("release_lease", "t1"), ("nak", SEQ, None)]


def _hand_back_while_running(tmp_path: Path, bus: FakeBus, attempt: int) -> dict[str, Any]:
    """Run a long task, ask for the hand-back once its CLI runs; its stand-in's start."""
    d = flow(tmp_path, bus)

    async def go() -> None:
        handling = asyncio.create_task(
            d.handle(task(attempt=attempt, instructions=directive(sleep=30)))
        )
        await started(tmp_path)
        d.hand_back.set()
        await handling  # ends by itself: no cancellation

    run(go())
    [start] = standin_records(tmp_path, "start")
    return start


def test_a_hand_back_kills_the_cli_frees_the_lease_and_naks_without_delay(
    tmp_path: Path,
) -> None:
    """Not a failure: no result, no dead letter, the lease free for the next delivery."""
    bus = FakeBus()
    start = _hand_back_while_running(tmp_path, bus, attempt=1)
    assert bus.ops == [*LEASED, ("release_lease", "t1"), ("nak", SEQ, None)]
    assert not alive(start["pid"])
    assert not standin_records(tmp_path, "end")
    assert bus.stored == {} and bus.dead == []


def test_a_hand_back_on_the_last_delivery_is_a_dead_letter_not_a_stranded_task(
    tmp_path: Path,
) -> None:
    """JetStream would not deliver it again after a nak: a dead letter keeps it for replay."""
    bus = FakeBus()
    _hand_back_while_running(tmp_path, bus, attempt=3)  # max_deliver 3
    why = f"{delivery.HANDED_BACK} on its last allowed delivery (3 of 3)"
    assert bus.ops == [
        *LEASED,
        ("release_lease", "t1"),
        ("publish_dead_letter", why),
        ("term", SEQ),
    ]


def test_a_task_described_after_the_hand_back_never_starts_its_cli(tmp_path: Path) -> None:
    bus = FakeBus()
    d = flow(tmp_path, bus)
    d.hand_back.set()
    run(d.handle(task()))
    assert bus.ops == [*LEASED, ("release_lease", "t1"), ("nak", SEQ, None)]
    assert not standin_records(tmp_path)


def test_a_second_message_of_a_running_task_is_settled_with_it(tmp_path: Path) -> None:
    bus = FakeBus()
    d = flow(tmp_path, bus)

    async def go() -> None:
        first = asyncio.create_task(d.handle(task(instructions=directive(sleep=1))))
        await started(tmp_path)
        await d.handle(task(seq=SEQ + 1))  # the same id again: joins, runs nothing
        assert d.join_if_running(task(attempt=2))  # a redelivery of the first: joins too
        await first

    run(go())
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("ack", SEQ),
        ("ack", SEQ + 1),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert len(standin_records(tmp_path, "start")) == 1


def test_each_step_of_a_running_task_stirs_the_heartbeat_and_tokens_alone_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two turns of the stand-in claude, each a `Read` call: the heartbeat is stirred at
    each step (turn, tool under way) it reads off the stream, in order, and on nothing else
    (the usage of each call, the answer's result)."""
    d = flow(tmp_path, FakeBus())
    steps: list[tuple[int, str | None]] = []
    monkeypatch.setattr(
        d.stats, "stir", lambda: steps.extend(a.step for a in d.stats.running.values())
    )
    run(d.handle(task(instructions=directive(ticks=2))))
    assert steps == [(1, "Read"), (1, None), (2, "Read"), (2, None), (3, None)]


def test_a_reconnect_signals_progress_and_refreshes_the_lease_at_once(tmp_path: Path) -> None:
    bus = FakeBus()
    d = flow(tmp_path, bus)

    async def go() -> None:
        handling = asyncio.create_task(d.handle(task(instructions=directive(sleep=2))))
        await started(tmp_path)
        d.reconnected()  # the next signal is 200 s away otherwise (ack_wait / 3)
        while ("refresh_lease", "t1") not in bus.ops:
            await asyncio.sleep(0.01)
        await handling

    run(go())
    assert bus.ops == [
        *LEASED,
        ("in_progress", SEQ),
        ("refresh_lease", "t1"),
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]


CHECKED = [("take_lease", "t1", SEQ), ("last_result", "t1"), ("cancelled", "t1"), ("over_budget",)]


def test_a_task_cancelled_before_it_runs_is_never_run_and_ends_cancelled(tmp_path: Path) -> None:
    bus = FakeBus(cancelled=("t1",))
    run(flow(tmp_path, bus, cancels=True).handle(task()))
    assert bus.ops == [
        *CHECKED[:3],
        ("publish_result", "t1", "cancelled"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert standin_records(tmp_path, "start") == []  # the CLI never started
    stored = result(bus)
    assert stored["error"] == records.CANCELLED_QUEUED and "cost_usd" not in stored
    # A redelivery finds the result: acked, not run, not retried.
    run(flow(tmp_path, bus, cancels=True).handle(task(attempt=2)))
    assert bus.ops[-3:] == [("last_result", "t1"), ("ack", SEQ), ("release_lease", "t1")]


def test_a_running_task_cancelled_has_its_cli_stopped_and_ends_cancelled(tmp_path: Path) -> None:
    bus = FakeBus()
    d = flow(tmp_path, bus, cancels=True, KILL_GRACE="0.2")

    async def go() -> float:
        handling = asyncio.create_task(d.handle(task(instructions=directive(sleep=30))))
        await started(tmp_path)
        assert d.cancels is not None
        asked = asyncio.get_running_loop().time()
        d.cancels.notice("t1")  # the mark's publish, as the subscription hands it on
        await handling
        return asyncio.get_running_loop().time() - asked

    took = run(go())
    assert took < 5  # stopped within its grace, not after the 30 s sleep
    assert bus.ops == [
        *CHECKED,
        ("publish_result", "t1", "cancelled"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert result(bus)["error"] == records.CANCELLED_RUNNING


def test_a_mark_seen_before_the_run_starts_cancels_it_at_once(tmp_path: Path) -> None:
    """Between the check and the start: the subscription's notice is remembered."""
    bus = FakeBus()
    d = flow(tmp_path, bus, cancels=True)
    assert d.cancels is not None
    d.cancels.notice("t1")
    run(d.handle(task(instructions=directive(sleep=30))))
    assert result(bus)["status"] == "cancelled"


def test_a_cancel_check_that_fails_holds_nothing_up(tmp_path: Path) -> None:
    bus = FakeBus(fail=("cancelled",))
    run(flow(tmp_path, bus, cancels=True).handle(task()))
    assert result(bus)["status"] == "completed"


def test_the_flow_makes_no_bus_call_of_its_own() -> None:
    """Everything on the bus goes through `Bus`: the flow imports no NATS client."""
    tree = ast.parse(Path(delivery.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    assert not {n for n in names if n.split(".")[0] == "nats" or n == "poller.jetstream"}
    assert "nats" not in {a.id for a in ast.walk(tree) if isinstance(a, ast.Name)}


# -- code tasks: a worktree of a repository (poller/workspace.py) ----------------------------


def _repos(tmp_path: Path, **fields: Any) -> tuple[str, gitrepos.Upstream]:
    """A repository `app` (a local upstream and an empty mirror) and the worker's file."""
    up = gitrepos.upstream(tmp_path, {"a.txt": "one\n"})
    entry = gitrepos.repo_entry(up, gitrepos.mirror(tmp_path), **fields)
    path = gitrepos.repos_file(tmp_path / "repos.json", {"app": entry}, worktrees=tmp_path / "wt")
    return str(path), up


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_code_task_is_paid_for_and_stored_with_its_change(tmp_path: Path) -> None:
    repos, up = _repos(tmp_path)
    bus = FakeBus()
    ask = directive(append={"a.txt": "two\n"})
    run(flow(tmp_path, bus, REPOS_FILE=repos).handle(task(instructions=ask, repo="app")))
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    code = result(bus)["code"]
    assert (code["base"], code["branch"], code["insertions"]) == (up.head(), "af/t1/w1", 1)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_code_tasks_that_cannot_start_end_without_the_cli(tmp_path: Path) -> None:
    repos, up = _repos(tmp_path, setup=["false"])
    # A repository this worker does not have: refused before the lease, like bad input.
    bus = FakeBus()
    run(flow(tmp_path, bus, REPOS_FILE=repos).handle(task(repo="other")))
    why = "repository 'other' is not declared for this worker (it has: app)"
    assert bus.ops == [
        ("publish_result", "t1", "rejected"),
        ("publish_dead_letter", why),
        ("term", SEQ),
    ]
    # A commit the remote does not have: rejected under the lease, nothing run.
    bus = FakeBus()
    run(flow(tmp_path, bus, REPOS_FILE=repos).handle(task(repo="app", base="f" * 40)))
    why = f"commit {'f' * 40} is not in app ({up.url})"
    assert bus.ops == [
        *LEASED,
        ("publish_result", "t1", "rejected"),
        ("publish_dead_letter", why),
        ("term", SEQ),
        ("release_lease", "t1"),
    ]
    # Setup fails: a failed result, acked; nothing was spent.
    bus = FakeBus()
    run(flow(tmp_path, bus, REPOS_FILE=repos).handle(task(repo="app")))
    assert bus.ops == [
        *LEASED,
        ("publish_result", "t1", "failed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert result(bus)["code"]["phase"] == "setup"
    # The remote is away: given back for a later delivery.
    shutil.rmtree(up.bare)
    bus = FakeBus()
    run(flow(tmp_path, bus, REPOS_FILE=repos).handle(task("t2", repo="app")))
    assert [op[0] for op in bus.ops] == [
        "take_lease",
        "last_result",
        "over_budget",
        "nak",
        "release_lease",
    ]
    assert standin_records(tmp_path, "start") == []


# -- rate limits: the worker pauses, the task waits (poller/pause.py) -----------------------


def _limited_for(seconds: float) -> str:
    """The stand-in claude is rate-limited for `seconds` from now, and says so."""
    return directive(limited_until=time.time() + seconds, retry_after=seconds)


def _limited_once(retry_after: float) -> str:
    """The stand-in claude's first run is rate-limited with a reset `retry_after` away; the
    next one is not, however late (under load) either starts."""
    return directive(limited_runs=1, retry_after=retry_after)


def test_a_rate_limited_task_is_kept_paused_and_run_again_not_failed(tmp_path: Path) -> None:
    """Its own worker's task: no nak (no delivery used up), no result, no dead letter until
    it ran; the worker paused until the reset the CLI named."""
    bus = FakeBus()
    d = flow(tmp_path, bus)
    t0 = time.time()
    run(d.handle(task(instructions=_limited_once(0.6))))
    assert bus.ops == [
        *LEASED,
        ("add_spend", COST),
        ("publish_result", "t1", "completed"),
        ("ack", SEQ),
        ("release_lease", "t1"),
    ]
    assert time.time() - t0 >= 0.6  # waited for the reset before running it again
    assert [r["phase"] for r in standin_records(tmp_path)] == ["start", "limited", "start", "end"]
    assert result(bus)["attempt"] == 1
    assert d.stats.counts == {"limited": 1, "completed": 1}
    assert d.stats.paused_until is None  # over


def test_a_rate_limited_route_task_goes_back_to_its_queue_at_once(tmp_path: Path) -> None:
    bus = FakeBus()
    d = flow(tmp_path, bus)
    routed = dataclasses.replace(task(instructions=_limited_for(60)), subject="af.route.r.inbox")
    run(d.handle(routed))
    assert bus.ops == [*LEASED, ("release_lease", "t1"), ("nak", SEQ, None)]
    assert bus.stored == {} and bus.dead == []
    assert d.pause.active() and d.stats.pause_reason == "rate limited"
    assert 59 < (d.stats.paused_until or 0) - time.time() <= 60


def test_on_its_last_delivery_a_limited_route_task_is_kept_not_stranded(tmp_path: Path) -> None:
    bus = FakeBus()
    d = flow(tmp_path, bus)
    last = dataclasses.replace(
        task(attempt=3, instructions=_limited_once(1.5)), subject="af.route.r.inbox"
    )
    run(d.handle(last))
    assert ("publish_result", "t1", "completed") in bus.ops and bus.dead == []
    assert not any(op[0] == "nak" for op in bus.ops)
    assert [r["phase"] for r in standin_records(tmp_path)] == ["start", "limited", "start", "end"]
    assert d.stats.counts == {"limited": 1, "completed": 1}


def test_a_limit_without_a_named_reset_backs_off_longer_each_time_in_a_row(
    tmp_path: Path,
) -> None:
    from poller.limits import Limit

    d = flow(tmp_path, FakeBus())
    t = time.time()
    firsts = [d.pause.begin(Limit("rate limited", None, "429"), now=t) - t for _ in range(3)]
    assert firsts == [60.0, 120.0, 240.0]
    d.pause.succeeded()
    d.pause.until = 0.0
    assert d.pause.begin(Limit("provider overloaded", None, "529"), now=t) - t == 30.0


def test_a_drain_during_the_pause_hands_a_kept_task_back_at_once(tmp_path: Path) -> None:
    """Kept for a 60 s pause, then the poller drains: not held to the drain's deadline
    (nor to the pause's end), given back now for another poller."""
    bus = FakeBus()
    d = flow(tmp_path, bus)
    d.draining = asyncio.Event()

    async def go() -> float:
        handling = asyncio.create_task(d.handle(task(instructions=_limited_for(60))))
        while not d.pause.active():
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        d.draining.set()
        await handling
        return time.monotonic() - t0

    assert run(go()) < 2
    assert bus.ops == [*LEASED, ("release_lease", "t1"), ("nak", SEQ, None)]
    assert bus.stored == {} and bus.dead == []
    assert [r["phase"] for r in standin_records(tmp_path)] == ["start", "limited"]


def _back_before_the_third_try(d: Delivery, bus: FakeBus, tried: tuple[Any, ...]) -> None:
    """Handle a task while `bus` fails; the bus is back once `tried` was sent twice (at
    once, then 0.25 s later), before the third try 0.5 s after that."""

    async def go() -> None:
        handling = asyncio.create_task(d.handle(task()))
        while bus.ops.count(tried) < 2:
            await asyncio.sleep(0.01)
        bus.fail = ()
        await handling

    run(go())
