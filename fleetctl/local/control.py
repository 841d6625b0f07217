"""Talking to a local fleet's supervisor from another process: start it detached and wait
until it is ready, ask it to apply fleet.yaml again, stop it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetctl.bus.localfleet import pid_alive
from fleetctl.local.children import spawn_logged
from fleetctl.local.state import StateDir, read_json, running_pid


class ControlError(Exception):
    """The supervisor failed or did not answer; the message says what to look at."""


# Told once, while the supervisor drains pollers: [{worker_id, tasks, until}] (Unix seconds).
OnDraining = Callable[[list[dict[str, Any]]], None]


def _draining(status: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The pollers the supervisor is draining now, if that is what it is doing."""
    rows = status.get("draining")
    if status.get("state") != "draining" or not isinstance(rows, list):
        return None
    return [r for r in rows if isinstance(r, dict)]


def _until(rows: list[dict[str, Any]]) -> float:
    """Monotonic time by which the last of `rows` is stopped (killed, if need be)."""
    ends = [r["until"] for r in rows if isinstance(r.get("until"), int | float)]
    return time.monotonic() + max([e - time.time() for e in ends], default=0.0)


def supervisor_argv(
    fleet_path: Path,
    servers_path: Path,
    state: StateDir,
    only: tuple[str, ...],
    ready_timeout: float,
    brokers: int = 1,
) -> list[str]:
    argv = [sys.executable, "-m", "fleetctl.local.supervisor"]
    argv += ["--fleet", str(fleet_path.resolve()), "--servers", str(servers_path.resolve())]
    argv += ["--state-dir", str(state.root), "--ready-timeout", str(ready_timeout)]
    if brokers != 1:
        argv += ["--brokers", str(brokers)]
    for wid in only:
        argv += ["--only", wid]
    return argv


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_detached(argv: list[str], state: StateDir, timeout: float) -> dict[str, Any]:
    """Start the supervisor in a session of its own; its status once it is ready."""
    state.create()
    state.supervisor_json.unlink(missing_ok=True)
    log_path = state.log("supervisor")
    proc = spawn_logged(argv, log_path, cwd=state.root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_json(state.supervisor_json) or {}
        if status.get("pid") == proc.pid and status.get("state") in ("running", "failed"):
            if status["state"] == "failed":
                proc.wait(30)  # it stops what it started first
                raise ControlError(str(status.get("error")))
            return status
        if proc.poll() is not None:
            status = read_json(state.supervisor_json) or {}
            if status.get("pid") == proc.pid and status.get("error"):
                raise ControlError(str(status["error"]))
            raise ControlError(
                f"the supervisor exited with {proc.returncode}: {log_path}\n{_tail(log_path)}"
            )
        time.sleep(0.05)
    raise ControlError(f"the local fleet was not ready within {timeout:.0f} s: see {log_path}")


def reload(
    state: StateDir, timeout: float, on_draining: OnDraining | None = None
) -> dict[str, Any]:
    """SIGHUP the running supervisor and wait for the outcome of that reload (`timeout`
    seconds, plus the drain of the pollers it stops or restarts)."""
    pid = running_pid(state)
    if pid is None:
        raise ControlError(f"no local fleet is running in {state.root}")
    before = (read_json(state.supervisor_json) or {}).get("generation", 0)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    told = False
    while time.monotonic() < deadline:
        status = read_json(state.supervisor_json) or {}
        rows = _draining(status)
        if rows is not None and status.get("generation", 0) > before:
            deadline = max(deadline, _until(rows) + timeout)
            if not told and on_draining is not None:
                on_draining(rows)
            told = True
        elif status.get("generation", 0) > before:
            return status
        if not pid_alive(pid):
            raise ControlError(f"the supervisor (pid {pid}) exited: see {state.log('supervisor')}")
        time.sleep(0.05)
    raise ControlError(f"the supervisor did not apply fleet.yaml within {timeout:.0f} s")


def stop(state: StateDir, extra: float = 15.0, on_draining: OnDraining | None = None) -> int | None:
    """SIGTERM the supervisor and wait until it has stopped everything (its pollers drain
    first); its pid, or None when nothing was running."""
    pid = running_pid(state)
    if pid is None:
        return None
    grace = float((read_json(state.supervisor_json) or {}).get("grace", 90))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace + extra
    told = False
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return pid
        rows = _draining(read_json(state.supervisor_json) or {})
        if rows is not None and not told:
            told = True
            if on_draining is not None:
                on_draining(rows)
        time.sleep(0.05)
    raise ControlError(f"the supervisor (pid {pid}) did not stop within {grace + extra:.0f} s")
