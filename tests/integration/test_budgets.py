"""Daily budgets enforced by real pollers from spend counters on a real broker (the KV bucket,
with the workers' least-privilege creds): a runaway worker stops at its budget."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from fleetctl.identity import natsaccess as na
from poller.budget import Budget, Limits
from tests.support.natsserver import NatsServer
from tests.support.nscfleet import connect
from tests.support.poller_harness import directive, setup_bus
from tests.support.taskfleet import TaskFleet, task_fleet

pytestmark = pytest.mark.integration

CLAUDE = {"MODEL_BACKEND": "claude", "LLM": "claude-code", "STANDIN_COST_USD": "0.25"}


def send(tf: TaskFleet, worker: str, n: int) -> dict[str, Any]:
    """Send one task and wait until it is done; its stored result (a rejected task is
    dead-lettered too, and `--wait` may see either first)."""
    args = ("--to", worker, "--id", f"t{n}", "--wait", "--json")
    done = tf.fleetctl("task", "send", directive(print="ok"), *args)
    assert done.stdout.strip(), done.stderr
    shown = tf.fleetctl("results", f"t{n}", "--json")
    [result] = json.loads(shown.stdout)["results"]
    return dict(result)


def _dead(tf: TaskFleet) -> list[dict[str, Any]]:
    dead: list[dict[str, Any]] = json.loads(tf.fleetctl("dead", "list", "--json").stdout)["dead"]
    return dead


def test_a_daily_budget_of_one_dollar_runs_four_tasks_of_a_quarter(tmp_path: Path) -> None:
    env = {**CLAUDE, "BUDGET_DAILY_USD": "1.00"}  # as fleet.yaml's budget renders it
    workers = {"w1": {"llm": "claude-code", "budget": {"daily_usd": 1.0}, "env": env}}
    with task_fleet(tmp_path, workers) as tf:
        results = [send(tf, "w1", n) for n in range(6)]
        assert [r["status"] for r in results] == ["completed"] * 4 + ["rejected"] * 2
        assert results[4]["error"].startswith(
            "over budget: worker w1 spent 1.00 of its daily_usd 1.00 (UTC day "
        )
        dead = _dead(tf)
        assert [d["task_id"] for d in dead] == ["t4", "t5"]
        # Replayed today, it is refused again (and dead-lettered again).
        replay = tf.fleetctl("dead", "replay", str(dead[0]["seq"]))
        assert replay.returncode == 0, replay.stderr
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_dead(tf)) < 3:
            time.sleep(0.1)
        assert [d["task_id"] for d in _dead(tf)] == ["t4", "t5", "t4"]
        costs = json.loads(tf.fleetctl("costs", "--json").stdout)
        assert costs["total_usd"] == 1.0
        assert len(tf.runs("w1")) == 4  # the CLI never started for the rejected ones
        shown = tf.fleetctl("status", "--json", "--no-hosts", admin=True)
        [w1] = json.loads(shown.stdout)["workers"]
        assert (w1["spent_today_usd"], w1["daily_usd"]) == (1.0, 1.0)


def test_two_workers_sharing_a_fleet_budget_run_four_tasks_between_them(tmp_path: Path) -> None:
    env = {**CLAUDE, "BUDGET_FLEET_DAILY_USD": "1"}
    workers = {w: {"llm": "claude-code", "env": env} for w in ("w1", "w2")}
    with task_fleet(tmp_path, workers, top={"budget": {"daily_usd": 1.0}}) as tf:
        results = [send(tf, ("w1", "w2")[n % 2], n) for n in range(6)]
        assert [r["status"] for r in results] == ["completed"] * 4 + ["rejected"] * 2
        assert "over budget: the fleet spent 1.00 of its daily_usd 1.00" in results[5]["error"]
        assert len(tf.runs("w1")) == 2 and len(tf.runs("w2")) == 2
        broker = json.loads(tf.fleetctl("status", "--json", "--no-hosts", admin=True).stdout)[
            "broker"
        ]
        assert (broker["fleet_spent_today_usd"], broker["fleet_daily_usd"]) == (1.0, 1.0)
        asyncio.run(_only_own_and_the_fleets_counters(tf))


async def _only_own_and_the_fleets_counters(tf: TaskFleet) -> None:
    """w1's creds write and read its own counter and the fleet's, never w2's."""
    names = tf.fleet.names
    bucket, stream = names.spend_bucket, names.spend_stream
    async with connect(tf.url, tf.fleet.workers["w1"], names.inbox_prefix("w1")) as w1:
        js = w1.nc.jetstream()
        for key in ("worker.w1.2000-01-01", "fleet.2000-01-01"):
            await js.publish(f"$KV.{bucket}.{key}", b'{"usd": 0}', stream=stream, timeout=2)
            await js.get_msg(stream, subject=f"$KV.{bucket}.{key}", direct=True)
        with pytest.raises(Exception):  # noqa: B017 - refused: no ack ever comes
            await js.publish(f"$KV.{bucket}.worker.w2.2000-01-01", b"{}", stream=stream, timeout=1)
        with pytest.raises(Exception):  # noqa: B017
            await js.get_msg(stream, subject=f"$KV.{bucket}.worker.w2.{_today()}", direct=True)
    refused = [e for e in w1.errors if "permissions violation" in e.lower()]
    assert [e.rsplit(" ", 1)[-1] for e in refused] == [
        f'"$kv.{bucket.lower()}.worker.w2.2000-01-01"',
        f'"$js.api.direct.get.{stream.lower()}.$kv.{bucket.lower()}.worker.w2.{_today()}"',
    ]


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def test_concurrent_results_lose_no_spend(tmp_path: Path) -> None:
    """Four tasks fanned out to two workers at once (two slots each): every result's cost
    reaches the shared fleet counter, whichever poller wrote first."""
    env = {**CLAUDE, "BUDGET_FLEET_DAILY_USD": "100", "CONCURRENCY": "2"}
    workers = {w: {"llm": "claude-code", "concurrency": 2, "env": env} for w in ("w1", "w2")}
    with task_fleet(tmp_path, workers, top={"budget": {"daily_usd": 100.0}}) as tf:
        for n in range(4):
            sent = tf.fleetctl(
                "task", "send", directive(print="ok", sleep=0.5), "--to", "w1", "--to", "w2",
                "--id", f"c{n}",
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 30
        done: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(done) < 8:
            done = [
                r
                for n in range(4)
                for r in json.loads(tf.fleetctl("results", f"c{n}", "--json").stdout)["results"]
                if r["status"] == "completed"
            ]
            time.sleep(0.2)
        assert len(done) == 8
        shown = json.loads(tf.fleetctl("status", "--json", "--no-hosts", admin=True).stdout)
        assert shown["broker"]["fleet_spent_today_usd"] == 2.0


# ---- a corrupt counter fails closed (poller/spend.py) ------------------------------------


async def _as_worker(tf: TaskFleet, worker: str, key: str, data: bytes, **headers: str) -> None:
    """Write a counter the way a compromised worker can: a plain publish with its own creds."""
    names = tf.fleet.names
    async with connect(tf.url, tf.fleet.workers[worker], names.inbox_prefix(worker)) as conn:
        await conn.nc.jetstream().publish(
            f"$KV.{names.spend_bucket}.{key}",
            data,
            stream=names.spend_stream,
            timeout=2,
            headers=headers or None,
        )


async def _counter(tf: TaskFleet, key: str) -> dict[str, Any]:
    names = tf.fleet.names
    async with connect(tf.url, tf.fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
        msg = await admin.nc.jetstream().get_msg(
            names.spend_stream, subject=f"$KV.{names.spend_bucket}.{key}", direct=True
        )
    body: dict[str, Any] = json.loads(msg.data or b"")
    return body


def _check(tf: TaskFleet) -> tuple[int, dict[str, Any]]:
    shown = tf.fleetctl("status", "--check", "--json", "--no-hosts", admin=True)
    body: dict[str, Any] = json.loads(shown.stdout)
    return shown.returncode, body


@pytest.mark.parametrize(
    ("written", "headers", "found"),
    [
        (b'{"usd": NaN}', {}, "usd is NaN"),
        (b'{"usd": -3}', {}, "usd is negative"),
        (b'"a string"', {}, "a JSON str, not an object"),
        (b'{"usd": 1e300}', {}, "usd is more than 1e+09"),
        (b"", {"KV-Operation": "DEL"}, "deleted (DEL)"),
    ],
)
def test_a_corrupt_fleet_counter_fails_closed_and_status_check_says_so(
    tmp_path: Path, written: bytes, headers: dict[str, str], found: str
) -> None:
    """A worker writes nonsense to the fleet's counter: the next task anywhere is rejected
    (its CLI never runs), the counter is reset to the budget, and `status --check` reports
    it all day. NaN used to turn the budget off (nothing is >= NaN) and showed `nan of 5.00`."""
    env = {**CLAUDE, "BUDGET_FLEET_DAILY_USD": "5"}
    workers = {w: {"llm": "claude-code", "env": env} for w in ("w1", "w2")}
    with task_fleet(tmp_path, workers, top={"budget": {"daily_usd": 5.0}}) as tf:
        assert send(tf, "w1", 0)["status"] == "completed"
        code, body = _check(tf)
        assert (code, body["problems"], body["broker"]["fleet_spent_today_usd"]) == (0, [], 0.25)

        key = f"fleet.{_today()}"
        asyncio.run(_as_worker(tf, "w1", key, written, **headers))
        code, body = _check(tf)
        assert code == 1
        assert body["broker"]["fleet_spent_today_usd"] is None
        assert body["broker"]["fleet_spend_problem"] == f"is corrupt ({found})"
        assert body["problems"] == [
            f"broker: the fleet's spend counter {key} is corrupt ({found}): the budget counts "
            "as spent for the rest of the UTC day (docs/security.md)"
        ]

        rejected = send(tf, "w2", 1)
        assert rejected["status"] == "rejected"
        assert rejected["error"] == (
            f"over budget: the spend counter of the fleet ({key}) was corrupt ({found}), so it "
            "counts as spent: reset to its daily_usd 5.00 for the rest of the UTC day "
            "(fleetctl status --check reports it); replay it later with fleetctl dead replay"
        )
        assert tf.runs("w2") == []  # its CLI never started
        counter = asyncio.run(_counter(tf, key))
        assert (counter["usd"], counter["reset"]) == (5.0, {"was": found, "by": "worker w2"})

        again = send(tf, "w1", 2)
        assert (again["status"], again["error"]) == (
            "rejected",
            "over budget: the fleet spent 5.00 (reset after it was found corrupt) of its "
            f"daily_usd 5.00 (UTC day {_today()}); replay it later with fleetctl dead replay",
        )
        assert len(tf.runs("w1")) == 1
        code, body = _check(tf)
        assert (code, body["broker"]["fleet_spent_today_usd"]) == (1, 5.0)
        assert body["problems"][0] == (
            f"broker: the fleet's spend counter {key} was reset to its limit by worker w2 after "
            f"it was found corrupt ({found}): the budget counts as spent for the rest of the "
            "UTC day (docs/security.md)"
        )
        shown = tf.fleetctl("status", "--no-hosts", admin=True)
        assert "fleet spend today: 5.00 of 5.00 (reset)" in shown.stdout


def test_a_workers_own_corrupt_counter_is_reset_by_its_next_result(
    server: NatsServer,
) -> None:
    """A counter without a limit of its own (the worker's, when only the fleet has a budget)
    is not read before a task; the next add resets it to 0 and counts the cost, and the
    fleet's counter never takes on the corrupt value."""

    async def go() -> None:
        await setup_bus(server.url, "w1")
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        budget = Budget(js, "AF_SPEND", "w1", Limits(None, 5.0))
        day = _today()
        await js.publish(f"$KV.AF_SPEND.worker.w1.{day}", b'{"usd": NaN}', stream="KV_AF_SPEND")
        assert await budget.over() is None  # the fleet's counter is fine
        await budget.add(0.25)
        await budget.add(0.5)
        own = await js.get_msg("KV_AF_SPEND", subject=f"$KV.AF_SPEND.worker.w1.{day}")
        fleet = await js.get_msg("KV_AF_SPEND", subject=f"$KV.AF_SPEND.fleet.{day}")
        assert {k: v for k, v in json.loads(own.data or b"").items() if k != "at"} == {
            "usd": 0.75,
            "reset": {"was": "usd is NaN", "by": "worker w1"},
        }
        assert json.loads(fleet.data or b"")["usd"] == 0.75
        before = (await js.stream_info("KV_AF_SPEND")).state.last_seq
        with pytest.raises(ValueError, match="usd is NaN"):
            await budget.add(float("nan"))
        assert (await js.stream_info("KV_AF_SPEND")).state.last_seq == before  # nothing written
        await nc.close()

    asyncio.run(go())


# ---- the race's bound (docs/security.md) -------------------------------------------------

SLOTS = 6  # two workers, concurrency 3 each


def _send_all(tf: TaskFleet, tasks: list[tuple[str, str]]) -> None:
    """Every task at once, from one client: all slots start before any result is counted."""
    from fleetctl.tasks.client import Client

    creds = tf.fleet.publisher.creds_path
    with Client.open(tf.fleet_path, server=tf.url, creds=creds) as client:
        for task_id, worker in tasks:
            client.send(directive(print="ok", sleep=2), to=[worker], task_id=task_id)


@pytest.mark.parametrize(
    ("per_task_usd", "most_per_task", "tasks"),
    [(None, 2.0, 8), (0.5, 0.8, 16)],
    ids=["no-per-task-limit", "per_task_usd-0.5"],
)
def test_racing_workers_overshoot_a_fleet_budget_by_at_most_their_slots_times_one_task(
    tmp_path: Path, per_task_usd: float | None, most_per_task: float, tasks: int
) -> None:
    """Tasks of $2 each (model calls of $0.30) on two workers of concurrency 3 against a
    fleet budget of $5. Each poller checks the budget before a task, so every slot can start
    while the counter is under it: the fleet ends at most SLOTS x (the most one task costs)
    over. Unlimited, that is a whole task ($2: bound $17, the attack measured $16). With
    fleet.yaml's `per_task_usd: 0.5` the CLI stops each task after the call that reaches
    $0.50 (Claude Code checks between calls), so one task costs at most $0.50 + one call."""
    env = {**CLAUDE, "STANDIN_COST_USD": "2", "STANDIN_CALL_USD": "0.3", "CONCURRENCY": "3"}
    workers = {w: {"llm": "claude-code", "concurrency": 3, "env": env} for w in ("w1", "w2")}
    budget = {"daily_usd": 5.0} | ({"per_task_usd": per_task_usd} if per_task_usd else {})
    with task_fleet(tmp_path, workers, top={"budget": budget}) as tf:
        ids = [(f"r{n}", ("w1", "w2")[n % 2]) for n in range(tasks)]
        deadline = time.monotonic() + 30
        while not all(p.logged("nats_connected") for p in tf.pollers.values()):
            assert time.monotonic() < deadline, "the pollers did not connect"
            time.sleep(0.1)
        _send_all(tf, ids)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(done) < tasks:
            for task_id in [t for t, _ in ids if t not in done]:
                shown = json.loads(tf.fleetctl("results", task_id, "--json").stdout)["results"]
                final = [r for r in shown if r["status"] in ("completed", "failed", "rejected")]
                if final:
                    done[task_id] = final[0]
            time.sleep(0.2)
        assert len(done) == tasks, sorted(done)
        status = json.loads(tf.fleetctl("status", "--json", "--no-hosts", admin=True).stdout)
        spent = status["broker"]["fleet_spent_today_usd"]
        ran = [r for r in done.values() if r["status"] != "rejected"]
        assert len(tf.runs("w1")) + len(tf.runs("w2")) == len(ran)  # rejected: no CLI run
        assert round(sum(r["cost_usd"] for r in ran), 6) == spent  # no spend lost
        assert 5.0 <= spent < 5.0 + SLOTS * most_per_task, (spent, len(ran))
        if per_task_usd is not None:
            assert {(r["status"], r["cost_usd"]) for r in ran} == {("failed", 0.6)}
            passed = {r["argv"][r["argv"].index("--max-budget-usd") + 1] for r in tf.runs("w1")}
            assert passed == {"0.5"}  # fleet.yaml's per_task_usd, as rendered into the unit
        print(f"\nfleet budget 5.00: spent {spent:.2f} in {len(ran)} tasks of {tasks}")
