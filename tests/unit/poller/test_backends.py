"""Argv per backend (exact, no prompt in it) and reading each CLI's machine-readable output.

The output samples are the shapes the real CLIs printed against local provider mocks
(tests/contract runs them); the contract tests prove the same readers on the real thing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller import backends, config

BASE = {"WORKER_ID": "w1", "NATS_URL": "nats://x:1"}


def _argv(**env: str) -> list[str]:
    cfg = config.load({**BASE, **env})
    return backends.argv(cfg.backend, cfg.settings)


def test_claude_argv() -> None:
    assert _argv(
        MODEL_BACKEND="claude",
        CLAUDE_BIN="/c",
        ALLOWED_TOOLS="Read,Edit",
        CLAUDE_MODEL="m",
        CLAUDE_PERMISSION_MODE="acceptEdits",
        CLAUDE_MAX_TURNS="20",
        CLAUDE_MAX_BUDGET_USD="1.5",
    ) == [
        "/c",
        "--print",
        "--output-format",
        "stream-json",
        "--verbose",
        "--no-session-persistence",
        "--permission-mode",
        "acceptEdits",
        "--max-turns",
        "20",
        "--max-budget-usd",
        "1.5",
        "--model",
        "m",
        "--allowedTools",
        "Read,Edit",
    ]
    assert _argv(MODEL_BACKEND="claude") == [
        "claude",
        "--print",
        "--output-format",
        "stream-json",
        "--verbose",
        "--no-session-persistence",
        "--permission-mode",
        "default",
    ]


def test_codex_argv() -> None:
    assert _argv(MODEL_BACKEND="codex", CODEX_MODEL="g5", CODEX_SANDBOX="workspace-write") == [
        "codex",
        "exec",
        "--json",
        "--ephemeral",
        "--disable",
        "unbounded_connection_retries",
        "--skip-git-repo-check",
        "--sandbox",
        "workspace-write",
        "--model",
        "g5",
        "-",
    ]


def test_gemini_and_command_argv() -> None:
    assert _argv(MODEL_BACKEND="gemini", GEMINI_MODEL="g") == [
        "gemini",
        "--skip-trust",
        "--output-format",
        "stream-json",
        "--approval-mode",
        "default",
        "--model",
        "g",
    ]
    assert _argv(MODEL_BACKEND="gemini", GEMINI_APPROVAL_MODE="auto_edit")[5] == "auto_edit"
    assert _argv(MODEL_BACKEND="command", COMMAND_ARGV='["a", "b c"]') == ["a", "b c"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLAUDE_PERMISSION_MODE": "yes"}, "CLAUDE_PERMISSION_MODE='yes' must be one of"),
        ({"CLAUDE_MAX_TURNS": "1.5"}, "CLAUDE_MAX_TURNS='1.5' must be an integer"),
        ({"CLAUDE_MAX_BUDGET_USD": "-1"}, "CLAUDE_MAX_BUDGET_USD='-1' must be greater than 0"),
        ({"CLAUDE_MAX_BUDGET_USD": "nan"}, "CLAUDE_MAX_BUDGET_USD='nan' must be greater than 0"),
    ],
)
def test_bad_claude_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.load({**BASE, "MODEL_BACKEND": "claude", **env})


CLAUDE_SUCCESS: dict[str, Any] = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "num_turns": 2,
    "result": "wrote it",
    "session_id": "d42dcf16",
    "total_cost_usd": 0.000864,
    "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 30},
    "modelUsage": {
        "claude-sonnet-4-6": {
            "inputTokens": 110,
            "outputTokens": 25,
            "cacheReadInputTokens": 30,
            "cacheCreationInputTokens": 40,
            "costUSD": 0.000864,
        }
    },
}


def test_claude_success_usage_is_summed_over_every_model() -> None:
    side = {"inputTokens": 5, "outputTokens": 1, "cacheReadInputTokens": 0}
    obj = {**CLAUDE_SUCCESS, "modelUsage": {**CLAUDE_SUCCESS["modelUsage"], "haiku": side}}
    p = backends.parse_output("claude", json.dumps(obj), complete=True)
    assert (p.output, p.cost_usd, p.is_error) == ("wrote it", 0.000864, False)
    assert p.usage == {
        "input_tokens": 115,
        "output_tokens": 26,
        "cache_read_tokens": 30,
        "cache_write_tokens": 40,
    }


@pytest.mark.parametrize(
    ("subtype", "error"),
    [
        ("error_max_turns", "Reached maximum number of turns (1)"),
        ("error_max_budget_usd", "Reached maximum budget ($0.0001)"),
        ("error_during_execution", "boom"),
    ],
)
def test_claude_error_results_keep_their_cost(subtype: str, error: str) -> None:
    obj = {**CLAUDE_SUCCESS, "subtype": subtype, "is_error": True, "errors": [error]}
    del obj["result"]
    p = backends.parse_output("claude", json.dumps(obj), complete=True)
    assert p.is_error and p.cost_usd == 0.000864
    assert p.output == f"{subtype}:\n{error}"
    assert p.usage is not None and p.usage["input_tokens"] == 110


def test_claude_falls_back_to_main_loop_usage() -> None:
    obj = {k: v for k, v in CLAUDE_SUCCESS.items() if k != "modelUsage"}
    p = backends.parse_output("claude", json.dumps(obj), complete=True)
    assert p.usage == {"input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 30}
    not_logged_in = {"subtype": "success", "is_error": True, "result": "Not logged in"}
    assert backends.parse_output("claude", json.dumps(not_logged_in), True).is_error


CODEX_EVENTS: list[dict[str, Any]] = [
    {"type": "thread.started", "thread_id": "01a2"},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "i0", "type": "file_change", "changes": []}},
    {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "wrote it"}},
    {
        "type": "turn.completed",
        "usage": {
            "input_tokens": 130,
            "cached_input_tokens": 30,
            "cache_write_input_tokens": 0,
            "output_tokens": 20,
            "reasoning_output_tokens": 4,
        },
    },
]


def _lines(events: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"


def test_codex_events_answer_and_usage() -> None:
    p = backends.parse_output("codex", _lines(CODEX_EVENTS), complete=True)
    assert (p.output, p.cost_usd, p.is_error) == ("wrote it", None, False)
    assert p.usage == {
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_tokens": 30,
        "cache_write_tokens": 0,
        "reasoning_tokens": 4,
    }


def test_codex_failed_turn_is_an_error_with_its_message() -> None:
    events = [
        *CODEX_EVENTS[:2],
        {"type": "error", "message": "Reconnecting... 1/1 (Connection failed)"},
        {"type": "error", "message": "Connection failed: error sending request"},
        {"type": "turn.failed", "error": {"message": "Connection failed: error sending request"}},
    ]
    p = backends.parse_output("codex", _lines(events), complete=True)
    assert p.is_error and p.output == "Connection failed: error sending request"
    assert p.usage is None


GEMINI = {
    "session_id": "a654",
    "response": "hello",
    "stats": {
        "models": {
            "gemini-2.5-pro": {
                "tokens": {
                    "input": 100,
                    "prompt": 130,
                    "candidates": 20,
                    "total": 150,
                    "cached": 30,
                    "thoughts": 7,
                    "tool": 0,
                }
            },
            "gemini-2.5-flash-lite": {"tokens": {"input": 3, "candidates": 1, "cached": 0}},
        }
    },
}


def test_gemini_json_answer_and_usage_over_every_model() -> None:
    p = backends.parse_output("gemini", json.dumps(GEMINI), complete=True)
    assert (p.output, p.cost_usd, p.is_error) == ("hello", None, False)
    assert p.usage == {
        "input_tokens": 103,
        "output_tokens": 28,
        "cache_read_tokens": 30,
        "reasoning_tokens": 7,
    }
    failed = {"session_id": "x", "error": {"type": "ApiError", "message": "quota", "code": 429}}
    p = backends.parse_output("gemini", json.dumps(failed), complete=True)
    assert (p.output, p.is_error, p.usage) == ("quota", True, None)


def test_unreadable_or_cut_output_passes_through() -> None:
    assert backends.parse_output("claude", "plain", True).output == "plain"
    cut = json.dumps({"result": "x"})[:5]
    assert backends.parse_output("claude", cut, False).output == cut
    assert backends.parse_output("codex", "no events\n", True).output == "no events\n"
    assert backends.parse_output("gemini", '["a"]', True).output == '["a"]'
    assert backends.parse_output("command", '{"result": "x"}', True).output == '{"result": "x"}'


def test_gemini_failure_is_read_from_the_end_of_stderr() -> None:
    """Gemini CLI prints a failed run's JSON on stderr (after the stack trace), not stdout."""
    err = {"session_id": "8f22", "error": {"type": "Error", "message": "status 400", "code": 400}}
    stderr = "    at async Turn.run (chunk.js:1:2) {\n  status: 400\n}\n" + json.dumps(
        err, indent=2
    )
    p = backends.parse_output("gemini", "", complete=True, stderr=stderr)
    assert (p.output, p.is_error) == ("status 400", True)
    assert backends.parse_output("gemini", "", True, stderr="no json here").output == ""


def test_a_task_budget_lowers_the_workers_never_raises_it() -> None:
    cfg = config.load({**BASE, "MODEL_BACKEND": "claude", "CLAUDE_MAX_BUDGET_USD": "2"})

    def budget(task: float | None) -> str:
        cmd = backends.task_argv("claude", cfg.settings, task)
        return cmd[cmd.index("--max-budget-usd") + 1]

    assert (budget(None), budget(0.5), budget(9)) == ("2", "0.5", "2")
    unbounded = config.load({**BASE, "MODEL_BACKEND": "claude"})
    assert "--max-budget-usd" not in backends.task_argv("claude", unbounded.settings, None)
    assert backends.task_argv("claude", unbounded.settings, 0.25)[-2:] == [
        "--max-budget-usd",
        "0.25",
    ]
    codex = config.load({**BASE, "MODEL_BACKEND": "codex"})
    with pytest.raises(ValueError, match="cannot bound"):
        backends.task_argv("codex", codex.settings, 1.0)


@pytest.mark.parametrize(
    ("usd", "arg"),
    [
        (0.5, "0.5"),
        (2.0, "2"),
        (0.57, "0.57"),
        (1000000.0, "1000000"),
        (0.000001, "0.000001"),  # not `1e-06`
        (0.1234567, "0.123456"),  # cut, never rounded up
        (999999.9999999, "999999.999999"),
    ],
)
def test_a_budget_reaches_the_cli_as_plain_decimals_never_above_the_one_asked(
    usd: float, arg: str
) -> None:
    assert backends.usd_arg(usd) == arg
    assert float(arg) <= usd
