"""Reading what each LLM CLI prints: the answer, usage, cost and whether it failed.

Usage is normalised to the same keys for every CLI (docs/messages.md): `input_tokens` (not
read from a cache), `output_tokens` (reasoning included), `cache_read_tokens`,
`cache_write_tokens` and `reasoning_tokens`, each only when the CLI reports it. Only Claude
Code reports a cost; the others leave `cost_usd` unset (poller/pricing.py prices them).
Output we cannot read is passed on as text, never raised on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from poller import spend


@dataclass(frozen=True)
class Parsed:
    """The answer text and, when the CLI reports them, usage, cost and an error flag."""

    output: str
    usage: dict[str, int] | None = None
    cost_usd: float | None = None
    is_error: bool = False


def text(stdout: str, stderr: str = "") -> Parsed:
    """A CLI whose stdout is the answer itself."""
    return Parsed(stdout)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(**counts: int | None) -> dict[str, int] | None:
    kept = {k: v for k, v in counts.items() if v is not None}
    return kept or None


def _sum(rows: list[dict[str, Any]], key: str) -> int | None:
    """The sum of `key` over rows that have it; None when none has it."""
    found = [_int(r[key]) for r in rows if key in r]
    return sum(found) if found else None


def claude_json(stdout: str, stderr: str = "") -> Parsed:
    """Claude Code's `--output-format json` result.

    Success carries `result`; error results (`error_max_turns`, `error_max_budget_usd`,
    `error_during_execution`, ...) carry `errors: [...]` and no `result`, and are still paid
    for. Tokens are summed over `modelUsage` (every model the run called, side calls included,
    the same calls `total_cost_usd` prices), falling back to the main loop's `usage`.
    """
    try:
        obj = json.loads(stdout)
    except json.JSONDecodeError:
        return Parsed(stdout)
    if not isinstance(obj, dict) or not ("result" in obj or "errors" in obj):
        return Parsed(stdout)
    if "result" in obj:
        answer = obj["result"]
        output = answer if isinstance(answer, str) else json.dumps(answer)
    else:
        errors = obj["errors"] if isinstance(obj["errors"], list) else [obj["errors"]]
        output = "\n".join(
            [
                f"{obj.get('subtype', 'error')}:",
                *(e if isinstance(e, str) else json.dumps(e) for e in errors),
            ]
        )
    cost = obj.get("total_cost_usd", obj.get("cost_usd"))
    return Parsed(
        output=output,
        usage=_claude_usage(obj),
        cost_usd=_cost(cost),
        is_error=bool(obj.get("is_error")) or "result" not in obj,
    )


def _cost(value: Any) -> float | None:
    """A reported cost: a finite number from 0 to spend.MAX_USD, else unknown (NaN would turn
    the spend counters corrupt; a huge integer cannot even be made a float)."""
    if spend.check_usd(value) is not None or not isinstance(value, int | float):
        return None
    return float(value)


def _claude_usage(obj: dict[str, Any]) -> dict[str, int] | None:
    models = obj.get("modelUsage")
    rows = [m for m in models.values() if isinstance(m, dict)] if isinstance(models, dict) else []
    if rows:
        return _usage(
            input_tokens=_sum(rows, "inputTokens"),
            output_tokens=_sum(rows, "outputTokens"),
            cache_read_tokens=_sum(rows, "cacheReadInputTokens"),
            cache_write_tokens=_sum(rows, "cacheCreationInputTokens"),
        )
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    return _usage(
        input_tokens=_sum([usage], "input_tokens"),
        output_tokens=_sum([usage], "output_tokens"),
        cache_read_tokens=_sum([usage], "cache_read_input_tokens"),
        cache_write_tokens=_sum([usage], "cache_creation_input_tokens"),
    )


def codex_events(stdout: str, stderr: str = "") -> Parsed:
    """`codex exec --json`: one JSON event per line.

    The answer is the last `item.completed` agent message; usage is summed over
    `turn.completed` events (OpenAI counts cached input inside `input_tokens`, so it is
    taken out); `turn.failed` or an `error` event with no answer is a failure.
    """
    answer: str | None = None
    failure: str | None = None
    turns: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        kind, item = event.get("type"), event.get("item")
        if kind == "item.completed" and isinstance(item, dict):
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                answer = item["text"]
        elif kind == "turn.completed" and isinstance(event.get("usage"), dict):
            turns.append(event["usage"])
        elif kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            failure = str(message or "turn failed")
        elif kind == "error" and isinstance(event.get("message"), str):
            failure = event["message"]
    if answer is None and failure is None and not turns:
        return Parsed(stdout)  # not the JSON event stream
    usage = None
    if turns:
        cached = _sum(turns, "cached_input_tokens")
        usage = _usage(
            input_tokens=(_sum(turns, "input_tokens") or 0) - (cached or 0),
            output_tokens=_sum(turns, "output_tokens"),
            cache_read_tokens=cached,
            cache_write_tokens=_sum(turns, "cache_write_input_tokens"),
            reasoning_tokens=_sum(turns, "reasoning_output_tokens"),
        )
    failed = failure is not None and (answer is None or not turns)
    return Parsed(output=(failure if failed else answer) or "", usage=usage, is_error=failed)


def gemini_json(stdout: str, stderr: str = "") -> Parsed:
    """`gemini --output-format json`: `response` and `stats.models.<model>.tokens` on stdout;
    a failed run prints `{"session_id", "error"}` at the end of stderr instead."""
    try:
        obj = json.loads(stdout)
    except json.JSONDecodeError:
        obj = _trailing_json(stderr) if not stdout.strip() else None
        if obj is None:
            return Parsed(stdout)
    if not isinstance(obj, dict) or not ("response" in obj or "error" in obj):
        return Parsed(stdout)
    error = obj.get("error")
    stats = obj.get("stats")
    models = stats.get("models") if isinstance(stats, dict) else None
    rows = [
        m["tokens"]
        for m in (models.values() if isinstance(models, dict) else ())
        if isinstance(m, dict) and isinstance(m.get("tokens"), dict)
    ]
    usage = None
    if rows:
        thoughts = _sum(rows, "thoughts")
        usage = _usage(
            input_tokens=_sum(rows, "input"),
            output_tokens=(_sum(rows, "candidates") or 0) + (thoughts or 0),
            cache_read_tokens=_sum(rows, "cached"),
            reasoning_tokens=thoughts,
        )
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        return Parsed(output=str(message), usage=usage, is_error=True)
    answer = obj.get("response")
    return Parsed(output=answer if isinstance(answer, str) else json.dumps(answer), usage=usage)


def _trailing_json(text: str) -> Any:
    """The JSON object that ends `text` and starts at the beginning of a line, if any."""
    start = text.rfind("\n{")
    for begin in ((start + 1) if start >= 0 else None, 0 if text.startswith("{") else None):
        if begin is None:
            continue
        try:
            return json.loads(text[begin:])
        except json.JSONDecodeError:
            continue
    return None
