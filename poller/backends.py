"""How each LLM CLI is invoked and how its output is read. The prompt always goes on stdin.

A prompt in argv would be visible to every user in `ps` and limited by ARG_MAX; on stdin it is
neither. The zai llm uses the claude backend: its provider endpoint and token reach the CLI
through the environment file systemd loads, never through the poller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from poller.config import Config


def argv(cfg: Config) -> list[str]:
    """The command line for this worker's backend (no prompt in it)."""
    if cfg.backend == "claude":
        cmd = [cfg.claude_bin, "--print", "--output-format", "json"]
        if cfg.allowed_tools:
            cmd += ["--allowedTools", ",".join(cfg.allowed_tools)]
        if cfg.claude_model:
            cmd += ["--model", cfg.claude_model]
        return cmd
    if cfg.backend == "codex":
        cmd = [cfg.codex_bin, "exec", "--skip-git-repo-check", "--sandbox", cfg.codex_sandbox]
        if cfg.codex_model:
            cmd += ["--model", cfg.codex_model]
        return [*cmd, "-"]  # `-`: read the prompt from stdin
    if cfg.backend == "gemini":
        cmd = [cfg.gemini_bin]
        if cfg.gemini_model:
            cmd += ["--model", cfg.gemini_model]
        return cmd
    return list(cfg.command_argv)


@dataclass(frozen=True)
class Parsed:
    """The answer text and, when the CLI reports them, usage, cost and an error flag."""

    output: str
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    is_error: bool = False


def parse_output(backend: str, stdout: str, complete: bool) -> Parsed:
    """Claude's `--output-format json` carries `result`, `usage` and `total_cost_usd`.

    Anything else, or JSON we cannot read (e.g. cut at the output cap), is passed on as text.
    """
    if backend != "claude" or not complete:
        return Parsed(stdout)
    try:
        obj = json.loads(stdout)
    except json.JSONDecodeError:
        return Parsed(stdout)
    if not isinstance(obj, dict) or "result" not in obj:
        return Parsed(stdout)
    usage = obj.get("usage")
    cost = obj.get("total_cost_usd", obj.get("cost_usd"))
    text = obj.get("result")
    return Parsed(
        output=text if isinstance(text, str) else json.dumps(text),
        usage=usage if isinstance(usage, dict) else None,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        is_error=bool(obj.get("is_error")),
    )
