#!/usr/bin/env python3
"""STAND-IN for an LLM CLI in tests (not a real claude/codex/gemini). Stdlib only.

Reads the prompt from stdin, appends a JSON line to $STANDIN_LOG (argv, stdin hash and size,
pid, cwd, phase, time), then does what the prompt's first line asks, if it starts with `standin:`
followed by a JSON object (anything after the object is ignored):
  sleep (s), exit (code), print (text), out_bytes (n bytes of 'x' on stdout),
  err (text on stderr), grandchild (s: fork a child that holds stdout and sleeps),
  sleep_first_run (s: only when no earlier start of this task id is logged),
  ignore_term (true: ignore SIGTERM), write_file (name: create it in cwd),
  files ({path: text}: write each, relative to cwd, directories made), append ({path: text}),
  delete ([path, ...]), append_by_worker ({worker id: {path: text}}),
  is_error (claude: success with is_error), fail (text: the CLI's own error shape, exit 1;
  for claude `fail` is the subtype, e.g. error_max_turns),
  by_worker ({worker id: text}: print this instead, on that worker),
  ticks (n: before answering, n model turns 0.3 s apart, each a call of the tool `Read`
  whose result comes 0.3 s later, in the flavour's stream shape; the command flavour prints
  `tick <i>` lines),
  limited_until (Unix time: until then the provider "rate-limits" it: it ends as the real
  CLI does on a 429, in its flavour's stream shape, exit 1; with retry_after (s) the
  provider's message names the reset, as `Please try again in <n>s.`; limited_on (a list of
  worker ids): only those are limited),
  limited_while (path: limited, as with limited_until, while that file exists),
  limited_runs (n: the first n runs of this task id are limited, as with limited_until:
  unlike a time, it does not depend on how long the stand-in takes to start),
  stall_while (path: while that file exists, the run goes silent: it prints nothing and
  sleeps for an hour, as a hung CLI does),
  hold_while (path: before its turns, it waits, silent, until that file is gone: a test
  lets the run go on once it is ready to watch it).
Without `print`, the text is $STANDIN_ANSWER if set, else `done: <stdin bytes> bytes`.
Each flavour prints what its real CLI prints with the poller's argv, in the shapes the real
CLIs (Claude Code 2.1, Codex CLI 0.171, Gemini CLI 0.61) were seen to print: the claude
flavour `--output-format json` (success, or an error result with `errors` and no `result`),
or with `stream-json` (which, like the real one, needs `--verbose`) an init event, the
answer as an assistant event and that result last; the codex flavour `exec --json` events;
the gemini flavour `--output-format json`, or `stream-json` events ending in a `result`. The usage
numbers are fixed: 11 input, 7 output, 3 cache read tokens; the claude flavour's cost is
$STANDIN_COST_USD (default 0.0123), spent in model calls of $STANDIN_CALL_USD each (default:
one call). Like Claude Code, the claude flavour checks `--max-budget-usd` after each call and
stops once the calls so far have cost at least that much with work left: an
`error_max_budget_usd` result whose cost is what the calls cost (up to one call over).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any


def record(**fields: object) -> None:
    path = os.environ.get("STANDIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({**fields, "at": time.time()}) + "\n")


def earlier_runs(task_id: object) -> int:
    path = os.environ.get("STANDIN_LOG")
    if not path or not os.path.exists(path):
        return 0
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return sum(1 for r in recs if r["phase"] == "start" and r["task_id"] == task_id)


def spent_within_budget() -> tuple[float, str | None]:
    """(what the calls cost, the budget that stopped them, as the CLI was given it)."""
    total = float(os.environ.get("STANDIN_COST_USD", "0.0123"))
    per_call = float(os.environ.get("STANDIN_CALL_USD") or total) or total
    budget = None
    if "--max-budget-usd" in sys.argv:
        budget = sys.argv[sys.argv.index("--max-budget-usd") + 1]
    spent = 0.0
    while spent < total - 1e-9:
        spent = round(min(spent + per_call, total), 6)
        if budget is not None and spent >= float(budget) and spent < total - 1e-9:
            return spent, budget
    return total, None


def claude(text: str, fail: str | None, is_error: bool) -> str:
    cost, _ = spent_within_budget()
    answer: dict[str, object] = {
        "type": "result",
        "subtype": fail or "success",
        "is_error": bool(fail) or is_error,
        "num_turns": 1,
        "stop_reason": "end_turn",
        "session_id": "00000000-0000-4000-8000-standin00001",
        "total_cost_usd": cost,
        "usage": {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 3},
        "modelUsage": {
            "standin-model": {
                "inputTokens": 11,
                "outputTokens": 7,
                "cacheReadInputTokens": 3,
                "costUSD": 0.0123,
            }
        },
        "permission_denials": [],
    }
    if fail:
        answer["errors"] = [text]
    else:
        answer["result"] = text
    return json.dumps(answer)


def claude_stream(text: str, fail: str | None, is_error: bool) -> str:
    usage = {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 3}
    events: list[dict[str, object]] = [
        {"type": "system", "subtype": "init", "model": "standin-model", "tools": ["Read"]},
        {
            "type": "assistant",
            "message": {
                "id": "msg_standin_answer",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "usage": usage,
            },
        },
    ]
    return "".join(json.dumps(e) + "\n" for e in events) + claude(text, fail, is_error) + "\n"


def ticks(flavour: str, n: int) -> None:
    """`n` model turns 0.3 s apart, each calling a tool, in the flavour's stream shape."""
    for i in range(n):
        if flavour == "claude":
            call = {"type": "tool_use", "id": f"toolu_{i}", "name": "Read", "input": {}}
            events: list[dict[str, object]] = [
                {
                    "type": "assistant",
                    "message": {
                        "id": f"msg_standin_{i}",
                        "role": "assistant",
                        "content": [call],
                        "usage": {"input_tokens": 100, "output_tokens": 10},
                    },
                },
                {
                    "type": "user",
                    "message": {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": "ok"}
                        ],
                    },
                },
            ]
        elif flavour == "codex":
            item = {"id": f"item_{i}", "type": "command_execution", "command": "ls"}
            events = [
                {"type": "item.started", "item": {**item, "status": "in_progress"}},
                {"type": "item.completed", "item": {**item, "status": "completed"}},
            ]
        elif flavour == "gemini":
            events = [
                {"type": "tool_use", "tool_name": "read_file", "tool_id": f"t{i}"},
                {"type": "tool_result", "tool_id": f"t{i}", "status": "success"},
            ]
        else:
            sys.stdout.write(f"tick {i}\n")
            events = []
        for n, e in enumerate(events):  # the call, then its result 0.3 s later
            sys.stdout.write(json.dumps(e) + "\n")
            sys.stdout.flush()
            time.sleep(0.3 if n == 0 else 0)
        if not events:
            sys.stdout.flush()
            time.sleep(0.3)


def codex(text: str, fail: str | None, is_error: bool) -> str:
    events: list[dict[str, object]] = [
        {"type": "thread.started", "thread_id": "standin-thread"},
        {"type": "turn.started"},
    ]
    if fail:
        events += [
            {"type": "error", "message": fail},
            {"type": "turn.failed", "error": {"message": fail}},
        ]
    else:
        events += [
            {
                "type": "item.completed",
                "item": {"id": "item_0", "type": "agent_message", "text": text},
            },
            {
                "type": "turn.completed",
                "usage": {
                    "input_tokens": 14,
                    "cached_input_tokens": 3,
                    "output_tokens": 7,
                    "reasoning_output_tokens": 0,
                },
            },
        ]
    return "".join(json.dumps(e) + "\n" for e in events)


def gemini(text: str, fail: str | None, is_error: bool) -> str:
    tokens = {"input": 11, "prompt": 14, "candidates": 7, "cached": 3, "thoughts": 0}
    answer: dict[str, object] = {
        "session_id": "standin-session",
        "stats": {"models": {"standin-model": {"tokens": tokens}}},
    }
    if fail:
        answer["error"] = {"type": "Error", "message": fail, "code": 1}
    else:
        answer["response"] = text
    return json.dumps(answer, indent=2)


def edit(ask: "dict[str, Any]") -> None:
    """The file edits a directive asks for, in the working directory (an agent's tools)."""
    append = dict(ask.get("append") or {})
    append.update((ask.get("append_by_worker") or {}).get(os.environ.get("FLEET_WORKER_ID")) or {})
    for path, text in (ask.get("files") or {}).items():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    for path, text in append.items():
        with open(path, "a") as f:
            f.write(text)
    for path in ask.get("delete") or []:
        os.remove(path)


def gemini_stream(text: str, fail: str | None, is_error: bool) -> str:
    stats = {"total_tokens": 21, "input_tokens": 14, "output_tokens": 7, "cached": 3, "input": 11}
    result: dict[str, object] = {
        "type": "result",
        "status": "error" if fail else "success",
        "stats": {**stats, "models": {"standin-model": stats}},
    }
    events: list[dict[str, object]] = [
        {"type": "init", "session_id": "standin-session", "model": "standin-model"},
        {"type": "message", "role": "user", "content": "(the prompt)"},
    ]
    if fail:
        result["error"] = {"type": "Error", "message": fail}
    else:
        events.append({"type": "message", "role": "assistant", "content": text, "delta": True})
    return "".join(json.dumps(e) + "\n" for e in [*events, result])


def limited(flavour: str, retry_after: object) -> str:
    """What the real CLI prints when its provider answers 429 (docs/poller.md)."""
    said = "rate limited" + (f". Please try again in {retry_after}s." if retry_after else "")
    if flavour == "claude":
        text = f"API Error: Request rejected (429) · {said}"
        message: dict[str, object] = {"id": "synthetic", "model": "<synthetic>"}
        message["content"] = [{"type": "text", "text": text}]
        events: list[dict[str, object]] = [
            {"type": "system", "subtype": "init"},
            {"type": "assistant", "message": message, "error": "rate_limit"},
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "api_error_status": 429,
                "result": text,
                "total_cost_usd": 0,
                "usage": {"input_tokens": 0},
            },
        ]
    elif flavour == "codex":
        text = f"exceeded retry limit, last status: 429 Too Many Requests ({said})"
        events = [
            {"type": "thread.started", "thread_id": "standin-thread"},
            {"type": "error", "message": text},
            {"type": "turn.failed", "error": {"message": text}},
        ]
    else:
        text = f"[API Error: Resource has been exhausted (e.g. check quota). {said}]"
        events = [
            {"type": "init", "session_id": "standin-session"},
            {
                "type": "result",
                "status": "error",
                "error": {"type": "unknown", "message": text},
                "stats": {},
            },
        ]
    return "".join(json.dumps(e) + "\n" for e in events)


SHAPES = {"claude": claude, "codex": codex, "gemini": gemini}
STREAM_SHAPES = {"claude": claude_stream, "gemini": gemini_stream}


def main(flavour: str) -> int:
    data = sys.stdin.buffer.read()
    first = data.split(b"\n", 1)[0].decode(errors="replace")
    # The directive is the JSON object right after `standin:`; what follows it on the line
    # is ignored (a task may add bytes there: a NUL, control characters).
    directive = first[len("standin:") :].lstrip()
    ask = json.JSONDecoder().raw_decode(directive)[0] if first.startswith("standin:") else {}
    base = {
        "flavour": flavour,
        "argv": sys.argv,
        "stdin_sha256": hashlib.sha256(data).hexdigest(),
        "stdin_bytes": len(data),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "task_id": os.environ.get("FLEET_TASK_ID"),
        "nats_env": sorted(k for k in os.environ if k.startswith("NATS_")),
    }
    if ask.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child_pid = None
    if ask.get("grandchild"):
        child = subprocess.Popen(["sleep", str(ask["grandchild"])], stdout=sys.stdout)
        child_pid = child.pid
    runs_before = earlier_runs(base["task_id"])
    streaming = "stream-json" in sys.argv
    if flavour == "claude" and streaming and "--verbose" not in sys.argv:
        sys.stderr.write(
            "Error: When using --print, --output-format=stream-json requires --verbose\n"
        )
        return 1
    record(phase="start", child_pid=child_pid, **base)
    if ask.get("write_file"):
        with open(ask["write_file"], "w") as f:
            f.write("written by the stand-in\n")
    edit(ask)
    if ask.get("err"):
        sys.stderr.write(ask["err"])
        sys.stderr.flush()
    worker = os.environ.get("FLEET_WORKER_ID")
    limited_now = (
        time.time() < float(ask.get("limited_until", 0))
        or (bool(ask.get("limited_while")) and os.path.exists(ask["limited_while"]))
        or runs_before < int(ask.get("limited_runs", 0))
    )
    if limited_now and worker in ask.get("limited_on", [worker]):
        sys.stdout.write(limited(flavour, ask.get("retry_after")))
        sys.stdout.flush()
        record(phase="limited", **base)
        return 1
    if ask.get("stall_while") and os.path.exists(ask["stall_while"]):
        record(phase="stalled", **base)
        time.sleep(3600)
    while ask.get("hold_while") and os.path.exists(ask["hold_while"]):
        time.sleep(0.05)
    ticks(flavour, int(ask.get("ticks", 0)))
    time.sleep(float(ask.get("sleep", 0)))
    if ask.get("sleep_first_run") and not runs_before:
        time.sleep(float(ask["sleep_first_run"]))
    text = ask.get("print", os.environ.get("STANDIN_ANSWER") or f"done: {len(data)} bytes")
    text = (ask.get("by_worker") or {}).get(os.environ.get("FLEET_WORKER_ID"), text)
    out = sys.stdout.buffer
    if ask.get("out_bytes"):
        n = int(ask["out_bytes"])
        while n > 0:
            out.write(b"x" * min(n, 65536))
            n -= 65536
    elif flavour in SHAPES:
        fail = ask.get("fail")
        stopped_at = spent_within_budget()[1] if flavour == "claude" else None
        if stopped_at is not None and not fail:
            fail, text = "error_max_budget_usd", f"Reached maximum budget (${stopped_at})"
        shape = STREAM_SHAPES.get(flavour, SHAPES[flavour]) if streaming else SHAPES[flavour]
        out.write(shape(text, fail, bool(ask.get("is_error"))).encode())
        if fail and "exit" not in ask:
            ask["exit"] = 1
    else:
        out.write(text.encode())
    out.flush()
    record(phase="end", **base)
    return int(ask.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main(os.environ.get("STANDIN_FLAVOUR", "command")))
