"""Reading what each LLM CLI prints: the answer text and, when reported, usage, cost, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Parsed:
    """The answer text and, when the CLI reports them, usage, cost and an error flag."""

    output: str
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    is_error: bool = False


def text(stdout: str) -> Parsed:
    """A CLI whose stdout is the answer itself."""
    return Parsed(stdout)


def claude_json(stdout: str) -> Parsed:
    """Claude's `--output-format json` carries `result`, `usage` and `total_cost_usd`.

    JSON we cannot read is passed on as text.
    """
    try:
        obj = json.loads(stdout)
    except json.JSONDecodeError:
        return Parsed(stdout)
    if not isinstance(obj, dict) or "result" not in obj:
        return Parsed(stdout)
    usage = obj.get("usage")
    cost = obj.get("total_cost_usd", obj.get("cost_usd"))
    answer = obj.get("result")
    return Parsed(
        output=answer if isinstance(answer, str) else json.dumps(answer),
        usage=usage if isinstance(usage, dict) else None,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        is_error=bool(obj.get("is_error")),
    )
