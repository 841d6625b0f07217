"""Built-in LLM names and the poller backend that runs each."""

from __future__ import annotations

from fleetctl.config.schema import LlmSpec

BUILTIN_LLMS: dict[str, LlmSpec] = {
    "claude-code": LlmSpec(backend="claude", bin="/usr/local/bin/claude"),
    # Z.ai speaks the Anthropic API: the claude CLI, pointed at it by the worker's env file.
    "zai": LlmSpec(backend="claude", bin="/usr/local/bin/claude", requires_env_file=True),
    "codex": LlmSpec(backend="codex", bin="/usr/bin/codex"),
    "gemini": LlmSpec(backend="gemini", bin="/usr/bin/gemini"),
    "command": LlmSpec(backend="command"),
}


def known_llms(extra: dict[str, LlmSpec]) -> dict[str, LlmSpec]:
    return {**BUILTIN_LLMS, **extra}
