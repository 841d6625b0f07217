"""Daily budgets enforced by real pollers from spend counters on a real broker (the KV bucket,
with the workers' least-privilege creds): a runaway worker stops at its budget."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.nscfleet import connect
from tests.support.poller_harness import directive
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
