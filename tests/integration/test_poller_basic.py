"""The happy path through a real poller process and nats-server, for every backend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nats
import pytest

from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    Poller,
    directive,
    poller_env,
    publish_task,
    run,
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
        assert rec["cwd"] == str(work / "repo")
        # the task is acked: the work-queue stream is empty
        assert await wait_until(lambda: _empty(js), 5)
        await nc.close()
        if backend == "claude":
            assert rec["argv"][1:] == [
                "--print",
                "--output-format",
                "json",
                "--allowedTools",
                "Read,Edit",
                "--model",
                "sonnet-x",
            ]
            assert result["usage"] == {"input_tokens": 11, "output_tokens": 7}
            assert result["cost_usd"] == 0.0123
            assert result["model"] == "sonnet-x"
        if backend == "codex":
            assert rec["argv"][1:] == [
                "exec",
                "--skip-git-repo-check",
                "--sandbox",
                "workspace-write",
                "--model",
                "gpt-x",
                "-",
            ]
        if backend == "gemini":
            assert rec["argv"][1:] == ["--model", "gem-x"]
        if backend == "command":
            assert rec["argv"][1:] == ["--flag"]
    finally:
        poller.stop()
    assert poller.proc is not None and poller.proc.returncode == 0
    assert not [e for e in poller.events() if e.get("event") == "not-json"]
    assert "Do the thing" not in poller.log_path.read_text()  # no prompt in INFO logs


async def _empty(js: object) -> bool:
    info = await js.stream_info("AF_TASKS")  # type: ignore[attr-defined]
    return bool(info.state.messages == 0)


BACKENDS = {
    "claude": {"CLAUDE_MODEL": "sonnet-x", "ALLOWED_TOOLS": "Read, Edit", "LLM": "zai"},
    "codex": {"CODEX_MODEL": "gpt-x", "CODEX_SANDBOX": "workspace-write"},
    "gemini": {"GEMINI_MODEL": "gem-x"},
    "command": {"COMMAND_ARGV": '["%s", "--flag"]'},
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_happy_path(server: NatsServer, work: Path, backend: str) -> None:
    extra = dict(BACKENDS[backend])
    if backend == "command":
        from tests.support.poller_harness import STANDIN

        extra["COMMAND_ARGV"] = extra["COMMAND_ARGV"] % (STANDIN / "fake-command")
    run(_one_task(server, work, backend, extra))
