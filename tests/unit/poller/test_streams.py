"""Stream readers, fed event lines in the shapes the real CLIs print (their contract tests
run the real ones: tests/contract/test_real_clis.py): what a task is doing now, and the
final result parsed exactly as from the CLI's one-shot JSON output."""

from __future__ import annotations

import json
from typing import Any

from poller import outputs, streams
from poller.activity import Activity
from poller.pricing import Price


def _feed(reader: streams.Reader, *events: dict[str, Any] | str) -> None:
    for e in events:
        reader.feed(e.encode() if isinstance(e, str) else json.dumps(e).encode())


def _assistant(msg_id: str, block: dict[str, Any], inp: int, out: int) -> dict[str, Any]:
    usage = {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": 0}
    message = {"id": msg_id, "role": "assistant", "content": [block], "usage": usage}
    return {"type": "assistant", "message": message}


TOOL_RESULT = {
    "type": "user",
    "message": {"role": "user", "content": [{"type": "tool_result", "content": "ok"}]},
}
CLAUDE_RESULT = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "result": "the answer",
    "total_cost_usd": 0.0021,
    "usage": {"input_tokens": 20, "output_tokens": 10},
    "modelUsage": {"m": {"inputTokens": 20, "outputTokens": 10, "costUSD": 0.0021}},
}


def test_claude_turns_tools_tokens_and_its_result_as_the_json_output() -> None:
    activity = Activity("t1")
    reader = streams.ClaudeStream(activity)
    _feed(reader, {"type": "system", "subtype": "init"})
    assert (activity.turn, activity.tool, activity.tokens) == (0, None, None)
    # One model call: a text block and a tool call, each its own line, one usage.
    text = {"type": "text", "text": "let me look"}
    call = {"type": "tool_use", "id": "x", "name": "Read", "input": {}}
    _feed(reader, _assistant("m1", text, 10, 1), _assistant("m1", call, 10, 1))
    assert (activity.turn, activity.tool, activity.tokens) == (1, "Read", 11)
    _feed(reader, TOOL_RESULT)
    assert (activity.turn, activity.tool) == (1, None)
    _feed(reader, _assistant("m2", {"type": "text", "text": "the answer"}, 15, 1))
    assert (activity.turn, activity.tokens) == (2, 27)
    assert reader.final() is None  # no result yet: a killed CLI's stdout is all there is
    _feed(reader, "not an event", CLAUDE_RESULT)
    assert (activity.tokens, activity.cost_usd) == (30, 0.0021)
    final = reader.final()
    assert final is not None
    assert outputs.claude_json(final) == outputs.claude_json(json.dumps(CLAUDE_RESULT))


def test_a_priced_worker_sees_the_cost_so_far_from_the_tokens() -> None:
    activity = Activity("t1")
    reader = streams.ClaudeStream(activity, Price(input=3.0, output=15.0))
    _feed(reader, _assistant("m1", {"type": "text", "text": "hi"}, 1_000_000, 0))
    assert activity.cost_usd == 3.0


def test_codex_turns_tools_and_the_events_its_reader_needs() -> None:
    activity = Activity("t1")
    reader = streams.CodexStream(activity)
    run = {"id": "i0", "type": "command_execution", "command": "ls"}
    answer = {"id": "i1", "type": "agent_message", "text": "the answer"}
    usage = {"input_tokens": 20, "cached_input_tokens": 5, "output_tokens": 10}
    events: list[dict[str, Any]] = [
        {"type": "thread.started", "thread_id": "x"},
        {"type": "turn.started"},
        {"type": "item.started", "item": {**run, "status": "in_progress"}},
    ]
    _feed(reader, *events)
    assert (activity.turn, activity.tool) == (1, "shell")
    big = {"id": "i0", "type": "command_execution", "aggregated_output": "x" * 100_000}
    _feed(reader, {"type": "item.completed", "item": big})
    assert (activity.turn, activity.tool) == (1, None)
    done: list[dict[str, Any]] = [
        {"type": "item.completed", "item": answer},
        {"type": "turn.completed", "usage": usage},
    ]
    _feed(reader, *done)
    assert (activity.turn, activity.tokens) == (2, 25)
    final = reader.final()
    assert final is not None and len(final) < 1000  # only what the reader needs is kept
    whole = "\n".join(json.dumps(e) for e in [*events, *done])
    assert outputs.codex_events(final) == outputs.codex_events(whole)


def test_gemini_turns_tools_and_its_result_in_the_json_outputs_shape() -> None:
    activity = Activity("t1")
    reader = streams.GeminiStream(activity)
    model = {"total_tokens": 38, "input_tokens": 20, "output_tokens": 10, "cached": 5, "input": 15}
    _feed(
        reader,
        {"type": "init", "model": "g"},
        {"type": "message", "role": "user", "content": "Do it."},
        {"type": "tool_use", "tool_name": "read_file", "tool_id": "a"},
    )
    assert (activity.turn, activity.tool) == (1, "read_file")
    _feed(
        reader,
        {"type": "tool_result", "tool_id": "a", "status": "success"},
        {"type": "message", "role": "assistant", "content": "the ", "delta": True},
        {"type": "message", "role": "assistant", "content": "answer", "delta": True},
        {"type": "result", "status": "success", "stats": {"models": {"g": model}}},
    )
    assert (activity.turn, activity.tool, activity.tokens) == (2, None, 33)
    final = reader.final()
    assert final is not None
    # What `--output-format json` prints for the same run: thoughts are the rest of the total.
    tokens = {"input": 15, "prompt": 20, "candidates": 10, "cached": 5, "thoughts": 8}
    one_shot = {"response": "the answer", "stats": {"models": {"g": {"tokens": tokens}}}}
    assert outputs.gemini_json(final) == outputs.gemini_json(json.dumps(one_shot))


def test_a_gemini_error_result_is_a_failure_with_its_message() -> None:
    reader = streams.GeminiStream(Activity("t1"))
    error = {"type": "ApiError", "message": "[API Error: 400 bad request]"}
    _feed(reader, {"type": "result", "status": "error", "error": error, "stats": {}})
    final = reader.final()
    assert final is not None
    parsed = outputs.gemini_json(final)
    assert (parsed.output, parsed.is_error) == ("[API Error: 400 bad request]", True)


def test_output_that_is_not_the_stream_falls_back_to_the_raw_stdout() -> None:
    for reader in (
        streams.ClaudeStream(Activity("t")),
        streams.CodexStream(Activity("t")),
        streams.GeminiStream(Activity("t")),
        streams.Plain(Activity("t")),
    ):
        _feed(reader, "Error: something went wrong", "[1, 2]")
        assert reader.final() is None
