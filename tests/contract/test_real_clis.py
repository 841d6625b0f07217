"""Contract tests: the real poller drives the real Claude Code, Codex and Gemini CLIs.

Each CLI, at the version pinned in the backend registry, runs with the exact argv the poller
builds, against a local mock of its provider's API (tests/support/provider_mock.py) reached
through the CLI's own documented base-URL setting, with dummy keys: the way a host points it
elsewhere (zai does it for real). A test scripts the model's answers and reads the result the
poller stored: its status, output, tokens and cost as the CLI reported them, and what the CLI did
in its task's worktree (a repository `app`, tests/contract/conftest.py), as the result's `code`
says. The CLIs start slowly, so each test runs one poller through several tasks.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    Poller,
    poller_env,
    publish_task,
    run,
    setup_bus,
    stream_messages,
    wait_until,
)
from tests.support.provider_mock import ProviderMock, Turn, Usage

pytestmark = pytest.mark.integration

Task = tuple[Turn, ...]
PLAIN = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=30, cache_write_tokens=40)
THINKING = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=30, reasoning_tokens=8)
# STALL_TIMEOUT of the stall tests: longer than each CLI takes to print its first event on
# a busy machine (Gemini CLI, a Node program, was seen to take more than 5 s to start).
STALL = {"claude": 5, "codex": 5, "gemini": 15}


def _dead_url() -> str:
    """A local address nothing listens on: the provider is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _tasks(
    server: NatsServer,
    work: Path,
    mock: ProviderMock,
    env: dict[str, str],
    tasks: list[Task],
    worker: str = "w1",
    fields: dict[int, dict[str, Any]] | None = None,
    beats: list[dict[str, Any]] | None = None,
) -> list[tuple[dict[str, Any], Usage]]:
    """Run each task (with its `fields`, by index) through one poller; each result with the
    usage the mock served for it. `beats` collects the worker's heartbeats meanwhile."""

    async def go() -> list[tuple[dict[str, Any], Usage]]:
        await setup_bus(server.url, worker, ack_wait=30)
        repos = {"REPOS_FILE": str(work / "repos.json")} if (work / "repos.json").exists() else {}
        poller = Poller(
            poller_env(server.url, worker, work, **repos, **env), work / f"{worker}.log"
        )
        poller.start()
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        if beats is not None:

            async def on_beat(msg: Any) -> None:
                beats.append(json.loads(msg.data))

            await nc.subscribe(f"af.worker.{worker}.status", cb=on_beat)
        out = []
        try:
            for i, turns in enumerate(tasks):
                mock.reset(*turns)
                task_id = f"{worker}-t{i}"
                task = {"task_id": task_id, "instructions": "Do it.", **(fields or {}).get(i, {})}
                await publish_task(js, worker, task)

                result = await _result_of(js, task_id)
                assert result is not None, poller.events()[-5:]
                out.append((result, mock.served()))
        finally:
            await nc.close()
            poller.stop()
        return out

    return run(go())


def worktree(work: Path, worker: str, i: int) -> Path:
    """Where `_tasks` runs its task number `i` for `worker`."""
    return work / "worktrees" / f"{worker}-t{i}"


def added(code: dict[str, Any]) -> list[str]:
    """The lines the change adds, from the result's patch."""
    lines = code["patch"].splitlines()
    return [x[1:] for x in lines if x.startswith("+") and not x.startswith("+++")]


async def _result_of(js: Any, task_id: str, timeout: float = 90) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = []

    async def stored() -> bool:
        got = await stream_messages(js, "AF_RESULTS")
        found[:] = [r for _, r, _ in got if r["task_id"] == task_id]
        return bool(found)

    return found[0] if await wait_until(stored, timeout, step=0.2) else None


# -- Claude Code: backends claude (claude-code) and zai -----------------------------------


def _claude_env(cli: Path, base_url: str, **extra: str) -> dict[str, str]:
    return {
        "MODEL_BACKEND": "claude",
        "LLM": "claude-code",
        "CLAUDE_BIN": str(cli),
        "CLAUDE_MODEL": "claude-sonnet-4-6",
        "ALLOWED_TOOLS": "Read,Write,Edit",
        "CLAUDE_MAX_TURNS": "3",
        "CLAUDE_MAX_BUDGET_USD": "1",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": "dummy",
        **extra,
    }


def _claude_tokens(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
    }


def test_claude_code(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    out_file = worktree(work, "w1", 1) / "out.txt"
    read = Turn(tool="Read", args={"file_path": str(worktree(work, "w1", 2) / "missing.txt")})
    tasks: list[Task] = [
        (Turn(text="the answer", usage=PLAIN),),
        (
            Turn(tool="Write", args={"file_path": str(out_file), "content": "by claude\n"}),
            Turn(text="wrote it"),
        ),
        (read, read, read, read, read),  # more turns than max_turns
        (Turn(tool="Read", args=read.args, usage=Usage(input_tokens=1_000_000)),),  # $3
    ]
    env = _claude_env(real_cli["claude"], mock.url)  # CLAUDE_MAX_BUDGET_USD=1
    budgeted = {3: {"max_budget_usd": 0.5}}  # the task's own budget lowers the worker's
    (plain, served), (edit, _), (turns, _), (budget, _) = _tasks(
        server, work, mock, env, tasks, fields=budgeted
    )

    assert (plain["status"], plain["output"], plain["exit_code"]) == ("completed", "the answer", 0)
    assert (plain["llm"], plain["model"]) == ("claude-code", "claude-sonnet-4-6")
    assert plain["usage"] == _claude_tokens(served)  # every call the CLI made, side calls too
    assert plain["cost_usd"] > 0 and plain["cost_source"] == "reported"

    assert (edit["status"], edit["output"]) == ("completed", "wrote it")
    assert out_file.read_text() == "by claude\n"
    assert edit["code"]["files"] == [
        {"path": "out.txt", "status": "added", "insertions": 1, "deletions": 0}
    ]
    assert added(edit["code"]) == ["by claude"] and plain["code"]["files"] == []

    assert (turns["status"], turns["exit_code"]) == ("failed", 1)
    assert turns["output"] == "error_max_turns:\nReached maximum number of turns (3)"
    assert turns["cost_usd"] > 0 and turns["usage"]["input_tokens"] > 0

    assert budget["status"] == "failed"
    assert budget["output"].startswith("error_max_budget_usd:\nReached maximum budget ($0.5)")
    assert budget["cost_usd"] > 0.5 and budget["cost_source"] == "reported"
    assert budget["usage"]["input_tokens"] >= 1_000_000


def test_zai_and_a_provider_that_is_down(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    """zai: the claude CLI against Z.ai's Anthropic endpoint (here its mock), glm priced by
    Claude Code's own table; then a claude worker whose provider does not answer."""
    zai = _claude_env(
        real_cli["claude"], f"{mock.url}/api/anthropic", LLM="zai", CLAUDE_MODEL="glm-4.6"
    )
    [(result, served)] = _tasks(server, work, mock, zai, [(Turn(text="hi from glm"),)])
    assert (result["status"], result["output"], result["llm"]) == (
        "completed",
        "hi from glm",
        "zai",
    )
    assert result["model"] == "glm-4.6" and result["usage"] == _claude_tokens(served)
    assert result["cost_source"] == "reported"
    assert all(s.path.startswith("/api/anthropic/v1/") for s in mock.seen)

    # Claude Code's own retries are bounded (10 by default; here the host's env sets 1).
    down = _claude_env(real_cli["claude"], _dead_url(), CLAUDE_CODE_MAX_RETRIES="1")
    [(result, _)] = _tasks(server, work, mock, down, [()], worker="w2")
    assert (result["status"], result["exit_code"]) == ("failed", 1)
    assert "Unable to connect to API" in result["output"]
    assert result["duration_s"] < 30


# -- Codex CLI ------------------------------------------------------------------------------


def _codex_home(work: Path, base_url: str) -> None:
    """The host's Codex config: a provider at the mock (the built-in one cannot be moved)."""
    (work / ".codex").mkdir(exist_ok=True)
    (work / ".codex" / "config.toml").write_text(
        'model_provider = "mock"\n'
        "[model_providers.mock]\n"
        'name = "mock"\n'
        f'base_url = "{base_url}/v1"\n'
        'env_key = "OPENAI_API_KEY"\n'
        'wire_api = "responses"\n'
        "supports_websockets = false\n"
        "request_max_retries = 1\n"
        "stream_max_retries = 1\n"
    )


def test_codex(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    _codex_home(work, mock.url)
    patch = "*** Begin Patch\n*** Add File: out.txt\n+by codex\n*** End Patch\n"
    tasks: list[Task] = [
        (Turn(text="the answer", usage=THINKING),),
        (Turn(tool="apply_patch", freeform=patch), Turn(text="patched")),
        (Turn(error=400),),
    ]
    env = {
        "MODEL_BACKEND": "codex",
        "LLM": "codex",
        "CODEX_BIN": str(real_cli["codex"]),
        "CODEX_MODEL": "gpt-5.5",
        "CODEX_SANDBOX": "workspace-write",
        "OPENAI_API_KEY": "dummy",
    }
    (plain, served), (edit, _), (error, _) = _tasks(server, work, mock, env, tasks)

    assert (plain["status"], plain["output"], plain["model"]) == (
        "completed",
        "the answer",
        "gpt-5.5",
    )
    assert plain["usage"] == {  # reasoning is part of OpenAI's output tokens
        "input_tokens": served.input_tokens,
        "output_tokens": served.output_tokens + served.reasoning_tokens,
        "cache_read_tokens": served.cache_read_tokens,
        "cache_write_tokens": 0,
        "reasoning_tokens": served.reasoning_tokens,
    }
    assert "cost_usd" not in plain and plain["cost_source"] == "unknown"

    assert (edit["status"], edit["output"]) == ("completed", "patched")
    assert (worktree(work, "w1", 1) / "out.txt").read_text() == "by codex\n"
    assert added(edit["code"]) == ["by codex"]

    assert (error["status"], error["exit_code"]) == ("failed", 1)
    assert "400" in error["output"], error

    # Provider down: without the poller's `--disable unbounded_connection_retries` Codex
    # waits for the network forever; with it, it gives up after the provider's retries.
    _codex_home(work, _dead_url())
    [(down, _)] = _tasks(server, work, mock, env, [()], worker="w2")
    assert (down["status"], down["exit_code"]) == ("failed", 1)
    assert "Connection failed" in down["output"], down["output"]
    assert down["duration_s"] < 30


# -- Gemini CLI -----------------------------------------------------------------------------


def test_gemini(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    (work / ".gemini").mkdir()
    settings: dict[str, Any] = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    (work / ".gemini" / "settings.json").write_text(json.dumps(settings))
    out_file = worktree(work, "w1", 1) / "out.txt"
    write = Turn(tool="write_file", args={"file_path": str(out_file), "content": "by gemini\n"})
    base = {
        "MODEL_BACKEND": "gemini",
        "LLM": "gemini",
        "GEMINI_BIN": str(real_cli["gemini"]),
        "GEMINI_MODEL": "gemini-2.5-pro",
        "GEMINI_API_KEY": "dummy",
        "GOOGLE_GEMINI_BASE_URL": mock.url,
    }
    developer = {**base, "GEMINI_APPROVAL_MODE": "auto_edit"}
    tasks: list[Task] = [
        (Turn(text="the answer", usage=THINKING),),  # runs at all: the work dir is trusted
        (write, Turn(text="wrote it")),
        (Turn(error=400),),
    ]
    (plain, served), (edit, _), (error, _) = _tasks(server, work, mock, developer, tasks)

    assert (plain["status"], plain["output"]) == ("completed", "the answer")
    assert plain["model"] == "gemini-2.5-pro"
    assert plain["usage"] == {  # its thoughts: what the stream's total has beyond the rest
        "input_tokens": served.input_tokens,
        "output_tokens": served.output_tokens + served.reasoning_tokens,
        "cache_read_tokens": served.cache_read_tokens,
        "reasoning_tokens": served.reasoning_tokens,
    }
    assert "cost_usd" not in plain and plain["cost_source"] == "unknown"

    assert (edit["status"], edit["output"]) == ("completed", "wrote it")
    assert out_file.read_text() == "by gemini\n"
    assert added(edit["code"]) == ["by gemini"]

    assert error["status"] == "failed" and error["exit_code"] != 0, error
    assert "400" in error["output"], error

    # A reviewer (approval_mode default) is asked to write: nothing is written.
    review_file = worktree(work, "w2", 0) / "out.txt"
    reviewer = {**base, "GEMINI_APPROVAL_MODE": "default"}
    ask = Turn(tool="write_file", args={"file_path": str(review_file), "content": "no\n"})
    [(review, _)] = _tasks(
        server, work, mock, reviewer, [(ask, Turn(text="could not"))], worker="w2"
    )
    assert review["status"] == "completed" and not review_file.exists()
    assert review["code"]["files"] == [] and review["code"]["branch"] is None

    # Provider down: Gemini CLI's retries are bounded (the host's settings.json may lower
    # general.maxAttempts from 10; here 2) and the run fails with the reason on stderr.
    settings["general"] = {"maxAttempts": 2}
    (work / ".gemini" / "settings.json").write_text(json.dumps(settings))
    down = {**developer, "GOOGLE_GEMINI_BASE_URL": _dead_url()}
    [(result, _)] = _tasks(server, work, mock, down, [()], worker="w3")
    assert result["status"] == "failed" and result["exit_code"] != 0
    assert "fetch failed" in result["output"], result["output"]
    assert result["duration_s"] < 30


# -- streaming: what a task is doing now, and a provider that stops answering ---------------


def _streams_and_stalls(
    server: NatsServer, work: Path, mock: ProviderMock, env: dict[str, str], slow_tool: Turn
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """A task whose tool runs 2 s (its turn and tool seen in the heartbeats meanwhile), then
    one whose provider stops answering mid-stream: (the heartbeats' in-flight entries, the
    first result, the stalled one)."""
    beats: list[dict[str, Any]] = []
    tasks: list[Task] = [(slow_tool, Turn(text="slept")), (Turn(hang=True),)]
    stall = str(STALL[env["MODEL_BACKEND"]])
    env = {**env, "STALL_TIMEOUT": stall, "HEARTBEAT_INTERVAL": "0.2"}
    (slept, _), (stalled, _) = _tasks(server, work, mock, env, tasks, worker="ws", beats=beats)
    seen = [t for b in beats for t in b["in_flight"] if t["task_id"] == "ws-t0"]
    return seen, slept, stalled


def _check_stalled(stalled: dict[str, Any], work: Path) -> None:
    stall = STALL[stalled["backend"]]
    assert stalled["status"] == "timeout", stalled
    assert stalled["error"] == f"stalled: no output for {stall}s"
    # The CLI's start and its request, STALL_TIMEOUT of silence, SIGTERM (KILL_GRACE 1 s).
    assert stall <= stalled["duration_s"] < stall + 20, stalled
    assert _running_in(work) == []  # its whole process group was killed


def _running_in(work: Path) -> list[str]:
    """The command lines of the processes whose working directory is under `work`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(str(work)):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def test_claude_code_streams_turns_and_tools_and_a_stalled_provider_times_out(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    env = _claude_env(real_cli["claude"], mock.url, ALLOWED_TOOLS="Bash")
    sleep = Turn(tool="Bash", args={"command": "sleep 2", "description": "wait"})
    seen, slept, stalled = _streams_and_stalls(server, work, mock, env, sleep)
    assert slept["status"] == "completed" and slept["output"] == "slept"
    assert any(t["turn"] == 1 and t["tool"] == "Bash" and t["tokens"] for t in seen), seen
    _check_stalled(stalled, work)


def test_codex_streams_turns_and_tools_and_a_stalled_provider_times_out(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    _codex_home(work, mock.url)
    env = {
        "MODEL_BACKEND": "codex",
        "CODEX_BIN": str(real_cli["codex"]),
        "CODEX_MODEL": "gpt-5.5",
        "OPENAI_API_KEY": "dummy",
    }
    sleep = Turn(tool="exec_command", args={"cmd": "sleep 2"})
    seen, slept, stalled = _streams_and_stalls(server, work, mock, env, sleep)
    assert slept["status"] == "completed" and slept["output"] == "slept"
    assert any(t["turn"] == 1 and t["tool"] == "shell" for t in seen), seen
    _check_stalled(stalled, work)


def test_gemini_streams_turns_and_tools_and_a_stalled_provider_times_out(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    (work / ".gemini").mkdir()
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    (work / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = {
        "MODEL_BACKEND": "gemini",
        "GEMINI_BIN": str(real_cli["gemini"]),
        "GEMINI_MODEL": "gemini-2.5-pro",
        "GEMINI_APPROVAL_MODE": "yolo",  # runs the shell command unasked
        "GEMINI_API_KEY": "dummy",
        "GOOGLE_GEMINI_BASE_URL": mock.url,
    }
    sleep = Turn(tool="run_shell_command", args={"command": "sleep 2"})
    seen, slept, stalled = _streams_and_stalls(server, work, mock, env, sleep)
    assert slept["status"] == "completed" and slept["output"] == "slept"
    assert any(t["turn"] == 1 and t["tool"] == "run_shell_command" for t in seen), seen
    _check_stalled(stalled, work)
