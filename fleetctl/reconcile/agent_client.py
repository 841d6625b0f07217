"""The client of fleetctl's host agent: send it a request, read its answer.

The agent (`fleetctl/hostside/`) is stdlib-only Python sent as `python3 -I -S -` with its
request on stdin, so no secret is ever on a command line. This module is the I/O; what to
ask and how to read the answer are in `fleetctl/reconcile/facts.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fleetctl.hostside import apply_program, source
from fleetctl.transport.base import Held, Transport, TransportError


def agent_program(req: Mapping[str, Any]) -> bytes:
    """The agent's source plus the call, sent on stdin: nothing secret on a command line.
    The request (JSON data: dicts, lists, strings, numbers, booleans, None) is written as a
    Python literal, which the host's interpreter reads without a JSON parser."""
    text = source("agent") if req.get("op") == "observe" else apply_program()
    return (text + f"\nmain({dict(req)!r})\n").encode()


AGENT_ARGV = ("python3", "-I", "-S", "-")  # isolated, no site: the stdlib is all it needs


def observe(transport: Transport, req: Mapping[str, Any]) -> dict[str, Any]:
    done = transport.run(AGENT_ARGV, agent_program(req), timeout=120)
    if done.code != 0:
        raise TransportError(transport.name, agent_failure(done.code, done.stderr))
    try:
        facts: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise TransportError(transport.name, "the host agent's answer was not JSON") from None
    return facts


def observe_under_lock(lock: Held, host: str, req: Mapping[str, Any]) -> dict[str, Any]:
    """The same observation, asked of the process that holds the host's apply lock."""
    lock.send(json.dumps(req).encode() + b"\n")
    line = lock.readline()
    try:
        answer: dict[str, Any] = json.loads(line)
    except ValueError:
        raise TransportError(host, "the host lock process stopped answering") from None
    return answer


def agent_failure(code: int, stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    if code == 127 or "python3: not found" in text or "No such file" in text[:200]:
        return (
            "python3 is not installed on the host; fleetctl's agent needs it (apt install python3)"
        )
    last = text.splitlines()[-1] if text else f"exit code {code}"
    return f"the host agent failed: {last}"
