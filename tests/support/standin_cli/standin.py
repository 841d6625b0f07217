#!/usr/bin/env python3
"""STAND-IN for an LLM CLI in tests (not a real claude/codex/gemini). Stdlib only.

Reads the prompt from stdin, appends a JSON line to $STANDIN_LOG (argv, stdin hash and size,
pid, cwd, phase), then does what the prompt's first line asks, if it starts with `standin:`
followed by a JSON object:
  sleep (s), exit (code), print (text), out_bytes (n bytes of 'x' on stdout),
  err (text on stderr), grandchild (s: fork a child that holds stdout and sleeps),
  sleep_first_run (s: only when no earlier start of this task id is logged),
  ignore_term (true: ignore SIGTERM), write_file (name: create it in cwd), is_error (claude).
The claude flavour answers like `claude --print --output-format json`.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time


def record(**fields: object) -> None:
    path = os.environ.get("STANDIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(fields) + "\n")


def earlier_runs(task_id: object) -> int:
    path = os.environ.get("STANDIN_LOG")
    if not path or not os.path.exists(path):
        return 0
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return sum(1 for r in recs if r["phase"] == "start" and r["task_id"] == task_id)


def main(flavour: str) -> int:
    data = sys.stdin.buffer.read()
    first = data.split(b"\n", 1)[0].decode(errors="replace")
    ask = json.loads(first[len("standin:") :]) if first.startswith("standin:") else {}
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
    record(phase="start", child_pid=child_pid, **base)
    if ask.get("write_file"):
        with open(ask["write_file"], "w") as f:
            f.write("written by the stand-in\n")
    if ask.get("err"):
        sys.stderr.write(ask["err"])
        sys.stderr.flush()
    time.sleep(float(ask.get("sleep", 0)))
    if ask.get("sleep_first_run") and not runs_before:
        time.sleep(float(ask["sleep_first_run"]))
    text = ask.get("print", f"done: {len(data)} bytes")
    out = sys.stdout.buffer
    if ask.get("out_bytes"):
        n = int(ask["out_bytes"])
        while n > 0:
            out.write(b"x" * min(n, 65536))
            n -= 65536
    elif flavour == "claude":
        answer = {
            "type": "result",
            "subtype": "success",
            "is_error": bool(ask.get("is_error")),
            "result": text,
            "total_cost_usd": 0.0123,
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }
        out.write(json.dumps(answer).encode())
    else:
        out.write(text.encode())
    out.flush()
    record(phase="end", **base)
    return int(ask.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main(os.environ.get("STANDIN_FLAVOUR", "command")))
