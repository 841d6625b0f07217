"""Reading a CLI's streaming output line by line, as it runs: what the task is doing now,
and what its final result is.

Each LLM CLI runs in its streaming mode (Claude Code `--output-format stream-json`, Codex
`exec --json`, Gemini CLI `--output-format stream-json`): one JSON event per line, from the
first model turn to the final result. A reader is fed every complete stdout line. It keeps
the task's `Activity` up to date (turn, the tool under way, tokens and cost so far; the
heartbeat reports it) and keeps, bounded, what the backend's output reader
(poller/outputs.py) needs, so the result is parsed exactly as from the CLI's one-shot JSON
output however long the stream was. A line that is not one of the CLI's events is skipped.

`turn` counts model turns: one starts with the first model event (text, or a tool call)
after the prompt or after a tool's result. The tokens so far are what the CLI has reported
up to now (Claude Code: per model call, its output counted as the call starts; Codex: only
when its turn completes; Gemini CLI: only in its final event); the result's usage comes from
the final event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from poller.activity import Activity
from poller.pricing import Price


class Reader(Protocol):
    def feed(self, line: bytes) -> None:
        """One complete stdout line, without its newline."""

    def final(self) -> str | None:
        """What the backend's output reader parses as the CLI's stdout; None: the stream
        did not end with the CLI's result (killed, crashed, not the stream): the raw stdout
        then."""

    def failure(self) -> str | None:
        """The error a failed run ended with, as the CLI worded it (None: it did not end in
        an error of its provider's), for poller/limits.py to read."""

    @property
    def retrying(self) -> str | None:
        """The CLI's last word, when that was that it waits to retry a refused request
        (then a silence is the wait, not a hang)."""


def _event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _Base:
    def __init__(self, activity: Activity, price: Price | None = None) -> None:
        self.activity = activity
        self.price = price
        self.seen = False  # any event of the CLI's stream at all
        self._awaiting_model = True
        self.retrying: str | None = None

    def failure(self) -> str | None:
        return None

    def _model(self) -> None:
        """A model event: a new turn if it follows the prompt or a tool's result."""
        if self._awaiting_model:
            self.activity.turn += 1
            self._awaiting_model = False

    def _tool_done(self) -> None:
        self.activity.tool = None
        self._awaiting_model = True

    def _tokens(self, usage: dict[str, int], reported_cost: float | None = None) -> None:
        """The tokens so far (input + output), and the cost so far: priced from them when
        the worker has prices, else what the CLI reported, if anything."""
        self.activity.tokens = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        if self.price is not None:
            self.activity.cost_usd = self.price.cost(usage)
        elif reported_cost is not None:
            self.activity.cost_usd = reported_cost


class ClaudeStream(_Base):
    """`claude --print --output-format stream-json --verbose`: `system` (init), `assistant`
    (one line per content block: text or tool_use, with the model call's usage), `user`
    (tool results), and last `result`, the same object `--output-format json` prints."""

    def __init__(self, activity: Activity, price: Price | None = None) -> None:
        super().__init__(activity, price)
        self.result: str | None = None
        self._calls: dict[str, dict[str, int]] = {}  # model call id -> its usage
        self._error: str | None = None  # the last API error it told of, and its kind
        self._failed: str | None = None

    def feed(self, line: bytes) -> None:
        event = _event(line)
        if event is None:
            return
        kind = event.get("type")
        if kind in ("system", "assistant", "user", "result"):
            self.seen = True
        message = event.get("message")
        self.retrying = None
        if kind == "system" and event.get("subtype") == "api_retry":
            # Waiting retry_delay_ms to try again (a retry-after it honours, or a backoff).
            self.retrying = f"{event.get('error_status')} {event.get('error')}"
        if kind == "assistant" and isinstance(event.get("error"), str):
            self._error = f"{event['error']}: {_text_of(message)}"
        if kind == "assistant" and isinstance(message, dict):
            self._model()
            content = message.get("content")
            for block in content if isinstance(content, list) else ():
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    self.activity.tool = str(block.get("name") or "?")[:100]
            usage = message.get("usage")
            if isinstance(usage, dict):
                self._calls[str(message.get("id") or len(self._calls))] = {
                    "input_tokens": _int(usage.get("input_tokens")),
                    "output_tokens": _int(usage.get("output_tokens")),
                    "cache_read_tokens": _int(usage.get("cache_read_input_tokens")),
                    "cache_write_tokens": _int(usage.get("cache_creation_input_tokens")),
                }
                self._tokens(_summed(self._calls.values()))
        elif kind == "user" and isinstance(message, dict):
            content = message.get("content")
            if any(
                isinstance(b, dict) and b.get("type") == "tool_result"
                for b in (content if isinstance(content, list) else ())
            ):
                self._tool_done()
        elif kind == "result":
            self.result = line.decode(errors="replace")
            self.activity.tool = None
            if event.get("is_error"):
                said = event.get("result") or event.get("errors") or ""
                status = event.get("api_error_status")
                self._failed = " ".join(
                    str(p) for p in (status or "", self._error or "", said) if p
                ).strip()
            cost = event.get("total_cost_usd")
            usage = event.get("usage")
            if isinstance(usage, dict):
                self._tokens(
                    {
                        "input_tokens": _int(usage.get("input_tokens")),
                        "output_tokens": _int(usage.get("output_tokens")),
                        "cache_read_tokens": _int(usage.get("cache_read_input_tokens")),
                        "cache_write_tokens": _int(usage.get("cache_creation_input_tokens")),
                    },
                    float(cost) if isinstance(cost, int | float) else None,
                )

    def final(self) -> str | None:
        return self.result

    def failure(self) -> str | None:
        return self._failed if self.result is not None else self._error


def _text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    texts = [
        str(b.get("text", ""))
        for b in (content if isinstance(content, list) else ())
        if isinstance(b, dict) and b.get("type") == "text"
    ]
    return " ".join(texts)


class CodexStream(_Base):
    """`codex exec --json`: `thread.started`, `turn.started`, `item.started` /
    `item.completed` (agent messages, command runs, file changes, tool calls), and
    `turn.completed` with the usage (or `turn.failed`, `error`). Kept for the result: the
    last agent message, every `turn.completed`, the last failure (what
    outputs.codex_events reads)."""

    TOOLS = ("command_execution", "file_change", "mcp_tool_call", "web_search")
    KINDS = ("thread.started", "turn.started", "item.started", "item.updated", "item.completed")

    def __init__(self, activity: Activity, price: Price | None = None) -> None:
        super().__init__(activity, price)
        self.answer: str | None = None
        self.turns: list[str] = []
        self.failed: str | None = None  # the last failure event, as printed
        self.error: str | None = None  # its message
        self.ended_failed = False
        self._usages: list[dict[str, int]] = []

    def feed(self, line: bytes) -> None:
        event = _event(line)
        if event is None:
            return
        kind, item = event.get("type"), event.get("item")
        text = line.decode(errors="replace")
        if kind in (*self.KINDS, "turn.completed", "turn.failed", "error"):
            self.seen = True
        if kind != "error":
            self.retrying = None
        if kind == "turn.failed":
            self.ended_failed = True
        if kind in ("item.started", "item.completed") and isinstance(item, dict):
            what = item.get("type")
            if what in self.TOOLS:
                self._model()
                if kind == "item.started":
                    self.activity.tool = _codex_tool(item)
                else:
                    self._tool_done()
            elif kind == "item.completed" and what in ("agent_message", "reasoning"):
                self._model()
                if what == "agent_message":
                    self.answer = text
        elif kind == "turn.completed":
            self.turns.append(text)
            usage = event.get("usage")
            if isinstance(usage, dict):
                cached = _int(usage.get("cached_input_tokens"))
                self._usages.append(
                    {
                        "input_tokens": _int(usage.get("input_tokens")) - cached,
                        "output_tokens": _int(usage.get("output_tokens")),
                        "cache_read_tokens": cached,
                    }
                )
                self._tokens(_summed(self._usages))
        elif kind in ("turn.failed", "error"):
            self.failed = text
            message = event.get("message") if kind == "error" else event.get("error")
            if isinstance(message, dict):
                message = message.get("message")
            said = str(message or "")
            # `Reconnecting... 1/5 (<why>)`: it waits (a retry-after, or its backoff), then
            # asks again.
            self.retrying = said if said.startswith("Reconnecting") else None
            if not said.startswith("Reconnecting"):
                self.error = said

    def final(self) -> str | None:
        if not self.seen:
            return None
        kept = [*([self.answer] if self.answer else []), *self.turns]
        return "\n".join([*kept, *([self.failed] if self.failed else [])])

    def failure(self) -> str | None:
        return self.error if self.ended_failed else None


def _codex_tool(item: dict[str, Any]) -> str:
    what = item.get("type")
    if what == "command_execution":
        return "shell"
    if what == "file_change":
        return "apply_patch"
    if what == "mcp_tool_call":
        return str(item.get("tool") or "mcp")[:100]
    return str(what)


class GeminiStream(_Base):
    """`gemini --output-format stream-json`: `init`, `message` (the user's prompt, then the
    assistant's answer in `delta` chunks), `tool_use` / `tool_result`, `error` (warnings and
    errors along the way), and last `result`: `status` success or error (with `error`), and
    `stats` per model. The result is rebuilt in `--output-format json`'s shape for
    outputs.gemini_json: the answer, each model's tokens (`thoughts` is what the total has
    beyond the prompt and the candidates: the stream's stats do not name it) and the error."""

    def __init__(self, activity: Activity, price: Price | None = None) -> None:
        super().__init__(activity, price)
        self.answer: list[str] = []
        self.result: dict[str, Any] | None = None
        self.warnings: list[str] = []

    def feed(self, line: bytes) -> None:
        event = _event(line)
        if event is None:
            return
        kind = event.get("type")
        if kind in ("init", "message", "tool_use", "tool_result", "error", "result"):
            self.seen = True
        if kind == "message" and event.get("role") == "assistant":
            self._model()
            content = event.get("content")
            if isinstance(content, str):
                if not event.get("delta"):
                    self.answer.clear()
                self.answer.append(content)
        elif kind == "tool_use":
            self._model()
            self.activity.tool = str(event.get("tool_name") or "?")[:100]
        elif kind == "tool_result":
            self._tool_done()
        elif kind == "error" and isinstance(event.get("message"), str):
            self.warnings = [*self.warnings[-9:], event["message"]]
        elif kind == "result":
            self.result = event
            self.activity.tool = None
            usage = _gemini_usage(event.get("stats"))
            if usage:
                self._tokens(
                    {
                        "input_tokens": sum(u["input"] for u in usage.values()),
                        "output_tokens": sum(
                            u["candidates"] + u["thoughts"] for u in usage.values()
                        ),
                        "cache_read_tokens": sum(u["cached"] for u in usage.values()),
                    }
                )

    def failure(self) -> str | None:
        if self.result is None or self.result.get("status") == "success":
            return None
        error = self.result.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return " ".join([*self.warnings[-3:], str(message or "")]).strip()

    def final(self) -> str | None:
        if self.result is None:
            return None
        models = {m: {"tokens": t} for m, t in _gemini_usage(self.result.get("stats")).items()}
        shaped: dict[str, Any] = {"response": "".join(self.answer), "stats": {"models": models}}
        if self.result.get("status") != "success":
            error = self.result.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            shaped["error"] = {"message": str(message or "; ".join(self.warnings) or "failed")}
        return json.dumps(shaped)


def _gemini_usage(stats: Any) -> dict[str, dict[str, int]]:
    """Per model: the stream's stats in `--output-format json`'s token names."""
    models = stats.get("models") if isinstance(stats, dict) else None
    out = {}
    for name, m in models.items() if isinstance(models, dict) else ():
        if not isinstance(m, dict):
            continue
        prompt, candidates = _int(m.get("input_tokens")), _int(m.get("output_tokens"))
        out[str(name)] = {
            "input": _int(m.get("input")),
            "candidates": candidates,
            "cached": _int(m.get("cached")),
            "thoughts": max(_int(m.get("total_tokens")) - prompt - candidates, 0),
        }
    return out


def _summed(rows: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            total[key] = total.get(key, 0) + value
    return total


class Plain(_Base):
    """A CLI whose stdout is its answer (the command backend): no events to read."""

    def feed(self, line: bytes) -> None:
        pass

    def final(self) -> str | None:
        return None


ReaderFactory = Callable[[Activity, Price | None], Reader]
