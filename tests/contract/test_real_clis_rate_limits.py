"""Contract tests: the real CLIs when their provider refuses them, driven by the real poller
(docs/poller.md, "Rate limits and provider outages").

The provider mock answers every agent turn with a 429 (without and with the provider's
retry-after), or a quota error, until the test sees the poller pause; then it answers
again. Each time the task must not fail: no result while it is refused, the worker paused
for the reason the CLI gave (with the reset time when the CLI's output names one), and the
task run again after the pause, once, on its first delivery.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.contract.test_real_clis import _claude_env, _codex_home, _result_of
from tests.support.natsserver import NatsServer
from tests.support.poller_harness import (
    Poller,
    poller_env,
    publish_task,
    run,
    setup_bus,
    wait_until,
)
from tests.support.provider_mock import ProviderMock, Turn

pytestmark = pytest.mark.integration

# The first backoff when no reset is named: a rate limit waits this long, a quota 15 times.
FAST = {"LIMIT_BACKOFF": "0.2"}
Refusal = tuple[str, Turn, str, bool]  # (case, the error, the pause's reason, reset named)


def _refused(
    server: NatsServer, work: Path, mock: ProviderMock, env: dict[str, str], cases: list[Refusal]
) -> None:
    """One poller; per case a task refused until the poller pauses, then answered."""

    async def go() -> None:
        await setup_bus(server.url, "w1", ack_wait=30)
        poller = Poller(poller_env(server.url, "w1", work, **FAST, **env), work / "w1.log")
        poller.start()
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        try:
            for i, (case, error, reason, named) in enumerate(cases):
                mock.reset(Turn(text=f"answered after {case}"))
                mock.refuse(3600, error)
                await publish_task(js, "w1", {"task_id": f"t{i}", "instructions": "Do it."})

                def paused(before: int = i) -> list[dict[str, Any]]:
                    return poller.logged("paused")[before:]

                assert await wait_until(lambda: bool(paused()), 90), poller.events()[-5:]
                assert await _result_of(js, f"t{i}", timeout=0.1) is None  # not failed
                pause = paused()[0]
                assert (pause["reason"], pause["reset_named"]) == (reason, named), (case, pause)
                refused = mock.refused()
                assert refused >= 1
                mock.refuse(0, error)  # the provider answers again
                result = await _result_of(js, f"t{i}")
                assert result is not None, poller.events()[-5:]
                assert (result["status"], result["output"]) == (
                    "completed",
                    f"answered after {case}",
                )
                assert result["attempt"] == 1  # kept, not handed back: no delivery used up
            dead = await js.stream_info("AF_DEAD")
            assert dead.state.messages == 0
        finally:
            await nc.close()
            poller.stop()

    run(go())


def _anthropic(status: int, kind: str, message: str, **headers: str) -> Turn:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return Turn(error=status, headers=headers, body=body)


def test_claude_code_rate_limited_and_out_of_credit(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    """Claude Code waits a short retry-after itself (an `api_retry` event), gives up at once
    on a long one, and names no reset in its result: a backoff, every time."""
    env = _claude_env(real_cli["claude"], mock.url, CLAUDE_CODE_MAX_RETRIES="1")
    limited = "Number of request tokens has exceeded your per-minute rate limit"
    cases: list[Refusal] = [
        ("a 429", _anthropic(429, "rate_limit_error", limited), "rate limited", False),
        (
            "a 429 with retry-after",
            _anthropic(429, "rate_limit_error", limited, **{"retry-after": "1"}),
            "rate limited",
            False,
        ),
        (
            "a spent credit balance",
            _anthropic(400, "invalid_request_error", "Your credit balance is too low."),
            "quota exhausted",
            False,
        ),
        (
            "an overload",
            _anthropic(529, "overloaded_error", "Overloaded"),
            "provider overloaded",
            False,
        ),
    ]
    _refused(server, work, mock, env, cases)


def _openai(status: int, kind: str, message: str, **headers: str) -> Turn:
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return Turn(error=status, headers=headers, body=body)


def test_codex_rate_limited_and_out_of_quota(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    """Codex waits a retry-after itself, even an hour, silent after `Reconnecting...`: the
    stall that follows is its wait, taken for the rate limit it is."""
    _codex_home(work, mock.url)
    env = {
        "MODEL_BACKEND": "codex",
        "CODEX_BIN": str(real_cli["codex"]),
        "CODEX_MODEL": "gpt-5.5",
        "OPENAI_API_KEY": "dummy",
        "STALL_TIMEOUT": "5",
    }
    limited = "Rate limit reached for gpt-5.5 on requests per min (RPM)."
    cases: list[Refusal] = [
        ("a 429", _openai(429, "rate_limit_exceeded", limited), "rate limited", False),
        (
            "a 429 with an hour's retry-after",
            _openai(429, "rate_limit_exceeded", limited, **{"retry-after": "3600"}),
            "rate limited",
            False,
        ),
        (
            "an exhausted quota",
            _openai(429, "insufficient_quota", "You exceeded your current quota."),
            "quota exhausted",
            False,
        ),
    ]
    _refused(server, work, mock, env, cases)


def _google(status: int, message: str, details: list[dict[str, Any]]) -> Turn:
    body = {"error": {"code": status, "message": message, "status": "RESOURCE_EXHAUSTED"}}
    body["error"]["details"] = details
    return Turn(error=status, body=body)


def test_gemini_rate_limited_and_out_of_quota(
    real_cli: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    """Gemini CLI names the reset the provider gave (`Suggested retry after 2s.`)."""
    (work / ".gemini").mkdir()
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"maxAttempts": 2},
    }
    (work / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = {
        "MODEL_BACKEND": "gemini",
        "GEMINI_BIN": str(real_cli["gemini"]),
        "GEMINI_MODEL": "gemini-2.5-pro",
        "GEMINI_API_KEY": "dummy",
        "GOOGLE_GEMINI_BASE_URL": mock.url,
    }
    exhausted = "Resource has been exhausted (e.g. check quota)."
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}
    daily = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
    }
    cases: list[Refusal] = [
        ("a 429", _google(429, exhausted, []), "rate limited", False),
        ("a 429 with a retry delay", _google(429, exhausted, [retry]), "rate limited", True),
        (
            "an exhausted daily quota",
            _google(429, "You exceeded your current quota.", [daily]),
            "quota exhausted",
            False,
        ),
    ]
    _refused(server, work, mock, env, cases)
