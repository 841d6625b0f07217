"""The host agent (fleetctl/hostside) loaded in this process the way a host's python3 reads
it (agent.py, then steps.py, in one namespace), with its edges replaceable: the commands
it spawns and the events it prints. For tests of the steps' logic, without root and
without touching this machine's system: what a step would run is recorded as argv."""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.hostside import apply_program

# Who runs the tests: files the agent writes in a test are owned by them (no root needed).
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def file_step(path: Path, data: bytes, mode: int = 0o640, **more: Any) -> dict[str, Any]:
    """A `file` step writing `data` to `path`, owned by whoever runs the tests."""
    return {
        "op": "file",
        "path": str(path),
        "content": base64.b64encode(data).decode(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "owner": OWNER,
        "group": GROUP,
        "mode": mode,
    } | more


def agent_namespace() -> dict[str, Any]:
    """agent.py, steps.py and previous.py as the agent program runs them
    (agent_client.agent_program)."""
    namespace: dict[str, Any] = {"__name__": "agent"}
    exec(compile(apply_program(), "agent.py", "exec"), namespace)
    return namespace


@dataclass
class FakeSpawn:
    """Stands in for the agent's `spawn`: records each argv (and env, when one is given)
    and answers (exit code, output) from `answers`, keyed by the argv's first words (the
    longest key that matches wins; None: it ran past its timeout); anything else exits 0
    with no output."""

    answers: Mapping[tuple[str, ...], tuple[int, bytes] | None] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    envs: list[dict[str, str] | None] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)

    def __call__(
        self,
        argv: Sequence[str],
        timeout: float,
        merge_stderr: bool,
        env: dict[str, str] | None = None,
    ) -> tuple[int, bytes] | None:
        self.calls.append(list(argv))
        self.envs.append(env)
        self.timeouts.append(timeout)
        keys = [k for k in self.answers if tuple(argv[: len(k)]) == k]
        return self.answers[max(keys, key=len)] if keys else (0, b"")


@dataclass
class Agent:
    """An agent namespace whose `spawn` and `_emit` are fakes: `apply` returns the exit
    code, `events` holds what it printed."""

    ns: dict[str, Any]
    spawn: FakeSpawn
    events: list[dict[str, Any]]

    def apply(self, *steps: dict[str, Any]) -> int:
        code: int = self.ns["apply"]({"op": "apply", "steps": list(steps)})
        return code

    def op(self, name: str) -> Any:
        return self.ns[f"op_{name}"]


def fake_agent(
    answers: Mapping[tuple[str, ...], tuple[int, bytes] | None] | None = None,
) -> Agent:
    ns = agent_namespace()
    spawn = FakeSpawn(dict(answers or {}))
    events: list[dict[str, Any]] = []
    ns["spawn"] = spawn
    ns["_emit"] = events.append
    return Agent(ns, spawn, events)
