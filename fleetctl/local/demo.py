"""`./dev demo`: the example fleet on this machine, one task to its demo workers (plain
commands that run anywhere), their real results side by side, then the fleet stopped.

It runs the same commands a user would (`fleetctl up --detach --json`, `fleetctl down`) and
sends the task with `fleetctl.tasks.client`, as `fleetctl task send --wait` does. A fleet already
running here is used and left running.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from fleetctl.bus.localfleet import default_state_dir
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.local.state import StateDir, running_pid
from fleetctl.local.workers import CLI_MISSING
from fleetctl.tasks.client import Client
from fleetctl.ui.terminal import err, out

TASK = (
    "Summarise this for the team: the fleet runs coding agents on our servers. The fleet "
    "sends each task over NATS to the agents that should do it, every agent answers with a "
    "result, and the results come back to the fleet, side by side."
)
TIMEOUT = 60.0
DEMO_ROLE = "demo"


def _role(fleet: Fleet, worker_id: str) -> str | None:
    w = fleet.worker(worker_id)
    return w.role if w is not None else None


def _fleetctl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "fleetctl"
    err().print(f"$ fleetctl {' '.join(args)}", markup=False, style="bold")
    return subprocess.run([str(binary), *args], stdout=subprocess.PIPE, text=True, check=False)


def _runs(fleet: Fleet, worker_id: str) -> str:
    """What the worker runs, as people would name it (a command is shown, not dressed up)."""
    w = fleet.worker(worker_id)
    if w is None:
        return ""
    if w.backend == "command" and w.command:
        text = " ".join(w.command)
        return f"command: {text if len(text) <= 40 else text[:37] + '...'}"
    return f"{w.llm} {w.model or ''}".strip()


def _table(fleet: Fleet, workers: list[str], results: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="One task, every demo worker", show_lines=True)
    table.add_column("", style="bold")
    for worker in workers:
        table.add_column(worker, overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("status", lambda r: r.get("status", "")),
        ("took", lambda r: f"{r.get('duration_s', 0):.2f} s"),
        ("output", lambda r: str(r.get("output", "")).strip() or r.get("error", "")),
    ]
    table.add_row("runs", *(Text(_runs(fleet, w)) for w in workers))
    for name, field in rows:
        cells = [
            str(field(results[w])) if w in results else f"(no result within {TIMEOUT:.0f} s)"
            for w in workers
        ]
        table.add_row(name, *(Text(c) for c in cells))
    return table


def not_started_lines(fleet: Fleet, entries: list[dict[str, str]], verbose: bool) -> list[str]:
    """The workers that did not start here: each with its reason under --verbose, else one
    line for those that only need their pinned LLM CLI (one command fetches them all) and
    one naming the others."""
    if verbose:
        return [f"{e['worker_id']}: not started: {e['reason']}" for e in entries]
    need_cli = [e["worker_id"] for e in entries if _needs_its_cli(fleet, e)]
    others = [e["worker_id"] for e in entries if e["worker_id"] not in need_cli]
    lines = []
    if need_cli:
        lines.append(
            f"{_workers(len(need_cli))} need{'s' if len(need_cli) == 1 else ''} an LLM CLI: "
            "fleetctl up --install-clis"
        )
    if others:
        names = ", ".join(others)
        lines.append(f"{_workers(len(others))} cannot start here: {names} (--verbose says why)")
    return lines


def _workers(n: int) -> str:
    return f"{n} worker{'s' if n != 1 else ''}"


def _needs_its_cli(fleet: Fleet, entry: dict[str, str]) -> bool:
    w = fleet.worker(entry["worker_id"])
    return w is not None and w.cli is not None and CLI_MISSING in entry["reason"]


def main(
    fleet_path: Path = Path("fleet.yaml"),
    servers_path: Path = Path("servers.yaml"),
    verbose: bool = False,
) -> int:
    state = StateDir(default_state_dir(fleet_path))
    fleet = load_fleet(fleet_path, servers_path)  # invalid: `fleetctl validate` said so
    already = running_pid(state) is not None
    up = _fleetctl("up", "--detach", "--json")
    if up.returncode != 0:
        return 1
    summary = json.loads(up.stdout)
    not_started = not_started_lines(fleet, summary["not_started"], verbose)
    started = list(summary["started"])
    # The task goes to the workers that run on any machine (role: demo); an LLM worker
    # that started here is named, not sent a task it may not have the login to run.
    workers = [w for w in started if _role(fleet, w) == DEMO_ROLE]
    others = [w for w in started if w not in workers]
    code = 0
    try:
        if not workers:
            err().print("no demo worker could start on this machine", markup=False)
            return 1
        if others:
            err().print(
                f"Also running here: {', '.join(others)} (send them a task: "
                f'fleetctl task send --to {others[0]} --wait "...")',
                markup=False,
            )
        err().print(f"Task for {', '.join(workers)}:\n  {TASK}", markup=False)
        with Client.open(fleet_path, servers_path) as client:
            done = client.wait(client.send(TASK, to=workers), timeout=TIMEOUT)
        results = {r.worker_id: dict(r.body) for r in done if r.final}
        out().print(_table(fleet, workers, results))
        code = 0 if len(results) == len(workers) else 1
    finally:
        if already:
            err().print("The local fleet was already running: it keeps running.", markup=False)
        else:
            code = _fleetctl("down").returncode or code
        for line in not_started:  # last: what works comes first, then what to do next
            err().print(line, markup=False)
    return code


if __name__ == "__main__":
    if set(sys.argv[1:]) - {"--verbose"}:
        err().print("usage: ./dev demo [--verbose]", markup=False)
        sys.exit(1)
    sys.exit(main(verbose="--verbose" in sys.argv[1:]))
