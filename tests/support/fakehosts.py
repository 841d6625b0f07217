"""Hosts that are not there: a Transport (fleetctl/transport/base.py) that answers fleetctl's
host agent and its `systemctl is-active` and `journalctl` probes from data, and records every
operation in order, for tests of the rollout and the observation without SSH, root or a host.

Stands in for fleetctl/transport/ssh.py; what fleetctl sends is kept as data (the agent's
requests, argv, uploads, forwards) so tests assert it exactly. The agent's request is read
back from the program fleetctl sends: its last line is `main(<request as a Python literal>)`
(fleetctl/reconcile/agent_client.py).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.reconcile.agent_client import AGENT_ARGV
from fleetctl.reconcile.desired.state import HostState
from fleetctl.reconcile.facts import ObservedHost
from fleetctl.reconcile.plan.changes import fingerprint
from fleetctl.reconcile.plan.hosts import unit_inputs
from fleetctl.reconcile.resources.packages import SYSTEM_PACKAGES, SYSTEM_VERSION
from fleetctl.transport.base import Completed, Held, LineHandler, Transport, TransportError

# This machine's platform as the agent reports it: bundles built here fit such a host.
PYTHON = {"version": "3.11.2", "platform": f"linux-{os.uname().machine}", "libc": "glibc-2.36"}

Op = tuple[str, ...]  # (host, what happened, details...)


class Log:
    """Every host's operations in the order they happened, shared by the hosts' threads."""

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._guard = threading.Lock()

    def add(self, *op: str) -> None:
        with self._guard:
            self._ops.append(op)

    @property
    def ops(self) -> list[Op]:
        with self._guard:
            return list(self._ops)

    def of(self, host: str) -> list[Op]:
        return [op[1:] for op in self.ops if op[0] == host]


def agent_request(program: bytes) -> dict[str, Any]:
    """The request at the end of an agent program (`main({...})`)."""
    last = program.decode().rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("main(") and last.endswith(")"), last[:80]
    request: dict[str, Any] = ast.literal_eval(last[len("main(") : -1])
    return request


@dataclass
class FakeHost(Transport):
    """One host. `facts` is the agent's answer to `observe`; `active` the state
    `systemctl is-active` reports per unit (default: active); `logs` each unit's journal;
    `fail_step` the index of the apply step the agent fails (with `fail_error`) in a
    program of several steps (not in a one-step confirmation or restore);
    `unreachable` makes every operation raise as a lost connection does; `bus_port` is where
    a forward to the bus leads (a real nats-server in integration tests). `fail_ops` fails
    any step of that op with that error (the confirmation, the restore); `said` is what a
    step of that op reports (a restore: `{"restored": ..., "started": [...]}`, by default
    the generation asked for and no unit); `lost_after`
    makes the connection drop once that many agent programs have run."""

    name: str
    log: Log
    facts: Mapping[str, Any] = field(default_factory=lambda: {"python": PYTHON})
    active: Mapping[str, str] = field(default_factory=dict)
    logs: Mapping[str, str] = field(default_factory=dict)
    fail_step: int | None = None
    fail_error: str = "stand-in failure"
    unreachable: bool = False
    holder: Mapping[str, str] | None = None  # another apply's, holding the lock
    bus_port: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)  # the agent's, in order
    closed: bool = False
    fail_ops: Mapping[str, str] = field(default_factory=dict)
    said: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    lost_after: int | None = None

    def _check(self) -> None:
        if self.unreachable:
            raise TransportError(self.name, "connection lost")

    def run(
        self,
        argv: Sequence[str],
        stdin: bytes = b"",
        *,
        timeout: float | None = None,
        on_line: LineHandler | None = None,
    ) -> Completed:
        self._check()
        if tuple(argv) == AGENT_ARGV:
            return self._agent(agent_request(stdin), on_line)
        self.log.add(self.name, "run", *argv)
        if list(argv[:2]) == ["systemctl", "is-active"]:
            states = [self.active.get(u, "active") for u in argv[2:]]
            return Completed(0 if set(states) == {"active"} else 3, _lines(states), b"")
        if argv[0] == "journalctl":
            unit = argv[argv.index("-u") + 1]
            return Completed(0, self.logs.get(unit, "").encode(), b"")
        raise AssertionError(f"{self.name}: unexpected command {list(argv)}")

    def _agent(self, request: dict[str, Any], on_line: LineHandler | None) -> Completed:
        self.requests.append(request)
        op = request["op"]
        if op == "observe":
            self.log.add(self.name, "observe")
            return Completed(0, json.dumps(dict(self.facts)).encode(), b"")
        assert op == "apply", op
        self.log.add(self.name, "apply", *(_said(s) for s in request["steps"]))
        programs = sum(r["op"] == "apply" for r in self.requests)
        if self.lost_after is not None and programs > self.lost_after:
            self.unreachable = True
            raise TransportError(self.name, "connection lost")
        out = []
        is_program = len(request["steps"]) > 1  # not a one-step confirmation or restore
        for i, step in enumerate(request["steps"]):
            error = self.fail_ops.get(step["op"])
            if error is None and is_program and i == self.fail_step:
                error = self.fail_error
            event: dict[str, Any] = {"i": i, "ok": True} if error is None else {}
            if error is not None:
                event = {"i": i, "ok": False, "error": error}
            elif step["op"] in self.said:
                event["said"] = dict(self.said[step["op"]])
            elif step["op"] == "restore_previous":  # by default, the version asked for
                event["said"] = {"restored": step.get("id") or "kept", "started": []}
            out.append(json.dumps(event))
            if on_line is not None:
                on_line(out[-1].encode())
            if error is not None:
                return Completed(1, _lines(out), b"")
        return Completed(0, _lines(out), b"")

    def put(self, local: Path, remote: str) -> None:
        self._check()
        self.log.add(self.name, "put", remote)

    def hold(self, argv: Sequence[str]) -> Held:
        """The host's apply lock (fleetctl/hostside/lock.py): granted unless `holder` says
        who holds it; observe requests sent through it are answered with `facts`."""
        self._check()
        self.log.add(self.name, "lock")
        return FakeLock(self)

    @contextlib.contextmanager
    def forward(self, host: str, port: int) -> Iterator[int]:
        self._check()
        self.log.add(self.name, "forward", f"{host}:{port}")
        if self.bus_port is None:
            raise TransportError(self.name, "no bus behind this stand-in host")
        yield self.bus_port

    def close(self) -> None:
        self.closed = True


class FakeLock(Held):
    """The lock process's side of its protocol: one line saying whether the lock was
    taken, then one answer line per observe request."""

    def __init__(self, host: FakeHost) -> None:
        self._host = host
        self._sending = threading.Lock()
        answer = {"locked": False, "holder": dict(host.holder)} if host.holder else {"locked": True}
        self._lines = [json.dumps(answer)]

    def readline(self) -> bytes:
        return (self._lines.pop(0) + "\n").encode() if self._lines else b""

    def _send(self, data: bytes) -> None:
        if data.strip():  # not a heartbeat
            self._host.requests.append(json.loads(data))
            self._host.log.add(self._host.name, "observe under the lock")
            self._lines.append(json.dumps(dict(self._host.facts)))

    def _close(self) -> None:
        self._host.log.add(self._host.name, "unlock")


def _lines(items: Sequence[str]) -> bytes:
    return "".join(f"{i}\n" for i in items).encode()


def _said(step: Mapping[str, Any]) -> str:
    """An agent step in one short phrase: `file /etc/x`, `systemctl restart a.service`."""
    if step["op"] == "systemctl":
        return " ".join(["systemctl", *step["args"]])
    target = step.get("path") or step.get("name") or step.get("dest") or step.get("venv")
    return f"{step['op']} {target}" if target else str(step["op"])


def converged(state: HostState) -> ObservedHost:
    """What a host looks like right after a successful apply of `state`."""
    resources = {r.key: fingerprint(r) for r, _ in state.resources()}
    bare = ObservedHost(resources=resources, managed=frozenset(resources))
    inputs = {u.name: unit_inputs(state, u, bare) for u in state.units}
    return ObservedHost(resources=resources, managed=frozenset(resources), unit_inputs=inputs)


def agent_answer(observed: ObservedHost) -> dict[str, Any]:
    """What a host's agent answers to `observe` on a host that has `observed` (the inverse
    of fleetctl/reconcile/facts.py `parse`, for the fields a converged host has)."""
    answer: dict[str, Any] = {
        "python": PYTHON,
        "files": {},
        "dirs": {},
        "users": {},
        "units": {},
        "repos": {},
        "versions": {},
        "commands": {},
        "manifest": {
            "resources": {k: None for k in sorted(observed.managed)},
            "units": {k: dict(v) for k, v in observed.unit_inputs.items()},
        },
    }
    for key, fp in observed.resources.items():
        kind, _, name = key.partition(" ")
        if kind == "dir":
            answer["dirs"][name] = {**fp, "is_dir": True}
        elif kind == "package" and fp["version"] == SYSTEM_VERSION:
            answer["commands"][SYSTEM_PACKAGES[name]] = f"/usr/bin/{SYSTEM_PACKAGES[name]}"
        elif kind == "package":
            answer["versions"][name] = fp["version"]
        else:
            answer[f"{kind}s"][name] = dict(fp)
    return answer
