"""The happy path through a real poller process and nats-server, for every backend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nats
import pytest

from poller import backends
from poller import config as poller_config
from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    Poller,
    directive,
    poller_env,
    publish_task,
    results,
    run,
    running_poller,
    setup_bus,
    standin_records,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration


async def _one_task(server: NatsServer, work: Path, backend: str, extra: dict[str, str]) -> None:
    await setup_bus(server.url, "w1")
    env = poller_env(server.url, "w1", work, MODEL_BACKEND=backend, **extra)
    poller = Poller(env, work / "poller.log").start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        prompt = directive(print="the answer", err="a warning") + "\nDo the thing."
        await publish_task(js, "w1", {"task_id": "t-1", "instructions": prompt, "from": "me"})

        async def has_result() -> bool:
            return len(await stream_messages(js, "AF_RESULTS")) == 1

        assert await wait_until(has_result, 15), poller.events()[-5:]
        [(subject, result, headers)] = await stream_messages(js, "AF_RESULTS")
        assert subject == "af.result.w1.t-1"
        assert not (headers or {}).get("Nats-Msg-Id")  # a stream-wide id could be forged
        assert result["status"] == "completed", result
        assert result["output"] == "the answer"
        assert result["stderr_tail"] == "a warning"
        assert result["worker_id"] == "w1" and result["backend"] == backend
        assert result["attempt"] == 1 and result["exit_code"] == 0
        assert result["from"] == "me" and result["version"] == 1
        [rec] = standin_records(work, "end")
        assert rec["stdin_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
        assert "Do the thing" not in " ".join(rec["argv"])  # the prompt never goes in argv
        assert rec["nats_env"] == []  # the CLI does not see the bus settings
        assert rec["task_id"] == "t-1"
        # A task without a repository: a fresh empty directory of its own, gone afterwards.
        assert rec["cwd"] == str(work / "worktrees" / "t-1")
        # the task is acked: the work-queue stream is empty
        assert await wait_until(lambda: _empty(js), 5)
        assert not (work / "worktrees" / "t-1").exists()  # removed before the ack
        await nc.close()
        # the CLI got the registry's argv unchanged (its exact words: tests/unit/poller)
        cfg = poller_config.load(env)
        assert rec["argv"][1:] == backends.argv(backend, cfg.settings)[1:]
        assert result["model"] == {"claude": "sonnet-x", "codex": "gpt-x", "gemini": "gem-x"}.get(
            backend, ""
        )
        if backend == "claude":
            assert result["usage"] == {
                "input_tokens": 11,
                "output_tokens": 7,
                "cache_read_tokens": 3,
            }
            assert (result["cost_usd"], result["cost_source"]) == (0.0123, "reported")
        elif backend in ("codex", "gemini"):
            assert result["usage"] == {
                "input_tokens": 11,
                "output_tokens": 7,
                "cache_read_tokens": 3,
                "reasoning_tokens": 0,
            }
            assert "cost_usd" not in result and result["cost_source"] == "unknown"
    finally:
        poller.stop()
    assert poller.proc is not None and poller.proc.returncode == 0
    assert not [e for e in poller.events() if e.get("event") == "not-json"]
    assert "Do the thing" not in poller.log_path.read_text()  # no prompt in INFO logs


async def _empty(js: object) -> bool:
    info = await js.stream_info("AF_TASKS")  # type: ignore[attr-defined]
    return bool(info.state.messages == 0)


BACKENDS = {
    "claude": {
        "CLAUDE_MODEL": "sonnet-x",
        "ALLOWED_TOOLS": "Read, Edit",
        "LLM": "zai",
        "CLAUDE_PERMISSION_MODE": "acceptEdits",
        "CLAUDE_MAX_TURNS": "5",
    },
    "codex": {"CODEX_MODEL": "gpt-x", "CODEX_SANDBOX": "workspace-write"},
    "gemini": {"GEMINI_MODEL": "gem-x", "GEMINI_APPROVAL_MODE": "auto_edit"},
    "command": {"COMMAND_ARGV": '["%s", "--flag"]'},
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_happy_path(server: NatsServer, work: Path, backend: str) -> None:
    extra = dict(BACKENDS[backend])
    if backend == "command":
        from tests.support.poller_harness import STANDIN

        extra["COMMAND_ARGV"] = extra["COMMAND_ARGV"] % (STANDIN / "fake-command")
    run(_one_task(server, work, backend, extra))


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_an_error_result_fails_the_task_and_keeps_what_it_cost(
    server: NatsServer, work: Path, backend: str
) -> None:
    """Claude's error results have `errors` and no `result`; codex and gemini their own."""
    fail = {"claude": "error_max_budget_usd"}.get(backend, "provider said no")

    async def go() -> None:
        env = {"MODEL_BACKEND": backend}
        async with running_poller(server.url, work, env=env) as bus:
            prompt = directive(print="Reached maximum budget ($0.01)", fail=fail)
            await publish_task(bus.js, "w1", {"task_id": "t-err", "instructions": prompt})
            assert await wait_until(lambda: _has(bus.js), 15), bus.poller.events()[-5:]
            [result] = await results(bus.js)
        assert (result["status"], result["exit_code"]) == ("failed", 1)
        if backend == "claude":
            assert result["output"] == "error_max_budget_usd:\nReached maximum budget ($0.01)"
            assert (result["cost_usd"], result["cost_source"]) == (0.0123, "reported")
            assert result["usage"]["input_tokens"] == 11
        else:
            assert result["output"] == "provider said no"
            assert result["cost_source"] == "unknown"

    run(go())


async def _has(js: object) -> bool:
    return len(await results(js)) == 1


def test_a_task_budget_reaches_claude_and_is_refused_where_it_cannot_be_kept(
    server: NatsServer, work: Path
) -> None:
    async def go() -> None:
        claude = {"MODEL_BACKEND": "claude", "CLAUDE_MAX_BUDGET_USD": "5"}
        async with running_poller(server.url, work, env=claude) as bus:
            task = {"task_id": "t-b", "instructions": "x", "max_budget_usd": 0.5}
            await publish_task(bus.js, "w1", task)
            assert await wait_until(lambda: _has(bus.js), 15), bus.poller.events()[-5:]
            [result] = await results(bus.js)
        assert result["status"] == "completed"
        [rec] = standin_records(work, "end")
        assert rec["argv"][rec["argv"].index("--max-budget-usd") + 1] == "0.5"

    run(go())


def test_a_task_budget_is_capped_by_the_workers_budget_and_refused_when_absurd(
    server: NatsServer, work: Path
) -> None:
    """No per-task limit on the worker, a daily budget of $3: a task asking for $100 gets
    `--max-budget-usd 3`; one asking for 1e300 (or an integer too large for a float) is
    rejected and dead-lettered on its first delivery, and no CLI runs for it."""
    budgets = {2: 100, 3: 0.25, 4: 1e300, 5: 10**400}

    async def go() -> None:
        claude = {"MODEL_BACKEND": "claude", "BUDGET_DAILY_USD": "3"}
        async with running_poller(server.url, work, env=claude) as bus:
            for n, usd in budgets.items():
                task = f'{{"task_id": "t-{n}", "instructions": "x", "max_budget_usd": {usd}}}'
                await publish_task(bus.js, "w1", task.encode())

            async def all_done() -> bool:
                return len(await results(bus.js)) == 4

            assert await wait_until(all_done, 20), bus.poller.events()[-5:]
            done = {r["task_id"]: r for r in await results(bus.js)}
            dead = [d for _, d, _ in await stream_messages(bus.js, "AF_DEAD")]
        assert [done[f"t-{n}"]["status"] for n in budgets] == ["completed"] * 2 + ["rejected"] * 2
        refused = "max_budget_usd must be a number of dollars from 0.000001 to 1000000"
        assert [done[f"t-{n}"].get("error") for n in (4, 5)] == [refused, refused]
        assert [(d["task_id"], d["attempt"]) for d in dead] == [("t-4", 1), ("t-5", 1)]
        passed = {r["task_id"]: r["argv"] for r in standin_records(work, "end")}
        assert {t: a[a.index("--max-budget-usd") + 1] for t, a in passed.items()} == {
            "t-2": "3",  # the daily budget caps it
            "t-3": "0.25",
        }

    run(go())


def test_a_budget_codex_cannot_keep_is_rejected(server: NatsServer, work: Path) -> None:
    async def go() -> None:
        async with running_poller(server.url, work, env={"MODEL_BACKEND": "codex"}) as bus:
            task = {"task_id": "t-b", "instructions": "x", "max_budget_usd": 0.5}
            await publish_task(bus.js, "w1", task)
            assert await wait_until(lambda: _has(bus.js), 15), bus.poller.events()[-5:]
            [result] = await results(bus.js)
        assert result["status"] == "rejected"
        assert result["error"] == "max_budget_usd: the codex backend cannot bound a task's cost"
        assert standin_records(work) == []  # the CLI never ran

    run(go())


# A price in USD per million tokens; the stand-in CLIs report 11 input, 7 output and 3
# cache-read tokens (claude also a cost of 0.0123 of its own).
PRICE = "input=1000,output=2000,cache_read=500"
PRICED = round((11 * 1000 + 7 * 2000 + 3 * 500) / 1e6, 6)


@pytest.mark.parametrize(
    ("backend", "env"),
    [
        ("codex", {}),
        ("gemini", {}),
        ("claude", {"LLM": "zai", "REPORTED_COST": "ignore"}),
    ],
)
def test_a_worker_with_a_price_prices_its_results_from_their_tokens(
    server: NatsServer, work: Path, backend: str, env: dict[str, str]
) -> None:
    """Codex and Gemini report tokens only; Claude Code's figure for Z.ai is not Z.ai's."""

    async def go() -> None:
        settings = {"MODEL_BACKEND": backend, "PRICE_USD_PER_MTOK": PRICE, **env}
        async with running_poller(server.url, work, env=settings) as bus:
            task = {"task_id": "t-priced", "instructions": directive(print="ok")}
            await publish_task(bus.js, "w1", task)
            assert await wait_until(lambda: _has(bus.js), 15), bus.poller.events()[-5:]
            [result] = await results(bus.js)
        assert result["status"] == "completed"
        assert (result["cost_usd"], result["cost_source"]) == (PRICED, "priced")

    run(go())


def test_a_zai_worker_without_a_price_reports_no_cost_rather_than_claudes(
    server: NatsServer, work: Path
) -> None:
    async def go() -> None:
        settings = {"MODEL_BACKEND": "claude", "LLM": "zai", "REPORTED_COST": "ignore"}
        async with running_poller(server.url, work, env=settings) as bus:
            task = {"task_id": "t-unpriced", "instructions": directive(print="ok")}
            await publish_task(bus.js, "w1", task)
            assert await wait_until(lambda: _has(bus.js), 15), bus.poller.events()[-5:]
            [result] = await results(bus.js)
        assert "cost_usd" not in result and result["cost_source"] == "unknown"
        assert result["usage"]["input_tokens"] == 11

    run(go())
