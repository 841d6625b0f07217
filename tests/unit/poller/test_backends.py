"""Argv builders (no prompt in argv) and Claude JSON output parsing."""

from __future__ import annotations

import json

from poller import backends, config

BASE = {"WORKER_ID": "w1", "NATS_URL": "nats://x:1"}


def _argv(**env: str) -> list[str]:
    cfg = config.load({**BASE, **env})
    return backends.argv(cfg.backend, cfg.settings)


def test_claude() -> None:
    assert _argv(
        MODEL_BACKEND="claude", CLAUDE_BIN="/c", ALLOWED_TOOLS="Read,Edit", CLAUDE_MODEL="m"
    ) == ["/c", "--print", "--output-format", "json", "--allowedTools", "Read,Edit", "--model", "m"]
    assert _argv(MODEL_BACKEND="claude") == ["claude", "--print", "--output-format", "json"]


def test_codex_gemini_command() -> None:
    assert _argv(MODEL_BACKEND="codex", CODEX_MODEL="g5") == [
        "codex",
        "exec",
        "--skip-git-repo-check",
        "--sandbox",
        "read-only",
        "--model",
        "g5",
        "-",
    ]
    assert _argv(MODEL_BACKEND="gemini", GEMINI_MODEL="g") == ["gemini", "--model", "g"]
    assert _argv(MODEL_BACKEND="command", COMMAND_ARGV='["a", "b c"]') == ["a", "b c"]


def test_claude_json_usage_and_cost() -> None:
    out = json.dumps({"result": "hi", "usage": {"output_tokens": 3}, "total_cost_usd": 0.5})
    p = backends.parse_output("claude", out, complete=True)
    assert (p.output, p.usage, p.cost_usd, p.is_error) == ("hi", {"output_tokens": 3}, 0.5, False)
    assert backends.parse_output(
        "claude", json.dumps({"result": "x", "is_error": True}), True
    ).is_error


def test_unreadable_or_cut_output_passes_through() -> None:
    assert backends.parse_output("claude", "plain", True).output == "plain"
    cut = json.dumps({"result": "x"})[:5]
    assert backends.parse_output("claude", cut, False).output == cut
    assert backends.parse_output("codex", '{"result": "x"}', True).output == '{"result": "x"}'
