"""`fleetctl costs` on a real broker, from results real pollers priced (stand-in CLIs in
each real CLI's output format: 11 input, 7 output, 3 cache-read tokens per task)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.poller_harness import directive
from tests.support.taskfleet import task_fleet

pytestmark = pytest.mark.integration

PRICE = "input=1000,output=2000,cache_read=500"  # USD per million tokens
PRICED_ENV = {"PRICE_USD_PER_MTOK": PRICE}
PRICED = round((11 * 1000 + 7 * 2000 + 3 * 500) / 1e6, 6)
WORKERS: dict[str, dict[str, Any]] = {
    "codex-1": {
        "llm": "codex",
        "model": "gpt-x",
        "labels": {"team": "a"},
        "env": {"MODEL_BACKEND": "codex", "LLM": "codex", "CODEX_MODEL": "gpt-x", **PRICED_ENV},
    },
    "gemini-1": {
        "llm": "gemini",
        "model": "gem-x",
        "labels": {"team": "a"},
        "env": {"MODEL_BACKEND": "gemini", "LLM": "gemini", "GEMINI_MODEL": "gem-x", **PRICED_ENV},
    },
    "zai-1": {
        "llm": "zai",
        "model": "glm-x",
        "env_file": "/etc/fleet/env/zai-1.env",
        "env": {
            "MODEL_BACKEND": "claude",
            "LLM": "zai",
            "CLAUDE_MODEL": "glm-x",
            "PRICE_USD_PER_MTOK": PRICE,
            "REPORTED_COST": "ignore",
        },
    },
    "claude-1": {  # Claude Code's own figure: 0.0123
        "llm": "claude-code",
        "env": {"MODEL_BACKEND": "claude", "LLM": "claude-code"},
    },
    "cmd-1": {"env": {"LLM": "command"}},  # no tokens, no cost: unpriced
}


def test_the_ledger_totals_are_the_sum_of_the_priced_results(tmp_path: Path) -> None:
    with task_fleet(tmp_path, WORKERS) as tf:
        for n in range(2):
            sent = tf.fleetctl(
                "task", "send", directive(print="ok"), *(a for w in WORKERS for a in ("--to", w)),
                "--id", f"t-{n}", "--wait", "--json",
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
        results = [
            r
            for n in range(2)
            for r in json.loads(tf.fleetctl("results", f"t-{n}", "--json").stdout)["results"]
        ]
        ledgers = {}
        for by in ("worker", "llm", "label", "model", "day"):
            done = tf.fleetctl("costs", "--by", by, "--json")
            assert done.returncode == 0, done.stderr
            ledgers[by] = json.loads(done.stdout)
        table = tf.fleetctl("costs", "--by", "llm")
    cost = {w: PRICED for w in ("codex-1", "gemini-1", "zai-1")} | {"claude-1": 0.0123}
    assert sorted(r["cost_usd"] or 0 for r in results) == sorted(
        [*cost.values(), *cost.values(), 0, 0]
    )
    total = round(sum(r["cost_usd"] or 0 for r in results), 6)
    for by, book in ledgers.items():
        assert set(book) == {"by", "rows", "total_usd"} and book["by"] == by
        assert book["total_usd"] == total == round(sum(r["cost_usd"] for r in book["rows"]), 6)
        assert sum(r["tasks"] for r in book["rows"]) == 10
        assert sum(r["unpriced_tasks"] for r in book["rows"]) == 2  # the command worker's
    rows = {r["key"]: r for r in ledgers["worker"]["rows"]}
    assert rows["codex-1"] == {
        "key": "codex-1", "tasks": 2, "input_tokens": 22, "output_tokens": 14,
        "cost_usd": round(2 * PRICED, 6), "unpriced_tasks": 0,
    }  # fmt: skip
    assert rows["zai-1"]["cost_usd"] == round(2 * PRICED, 6)  # not Claude Code's 0.0123
    assert rows["claude-1"]["cost_usd"] == 0.0246
    assert rows["cmd-1"] == {
        "key": "cmd-1", "tasks": 2, "input_tokens": 0, "output_tokens": 0,
        "cost_usd": 0.0, "unpriced_tasks": 2,
    }  # fmt: skip
    labels = {r["key"]: r["cost_usd"] for r in ledgers["label"]["rows"]}
    assert labels["team=a"] == round(4 * PRICED, 6)
    assert {r["key"] for r in ledgers["llm"]["rows"]} == {
        "codex", "gemini", "zai", "claude-code", "command",
    }  # fmt: skip
    assert table.returncode == 0 and "total" in table.stdout and f"{total:.4f}" in table.stdout
