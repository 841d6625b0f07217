"""Measure `fleetctl up`: from `fleetctl up --detach` to ready (the command returns once every
started worker's heartbeat arrived), and the memory of the whole local fleet at idle.

    .venv/bin/python bench/bench_up.py [--runs 5] [--workers 20]

Two fleets, each in a temporary directory with its own state dir: the shipped example and
one of N `wc -w` command workers. Each run is `up --detach` then `down`; the first run of
each fleet also creates the local creds store, the later ones find it. How many of the
example's workers start depends on the machine: its two command workers always, the LLM
workers where their pinned CLI is in the CLI cache (`XDG_CACHE_HOME=/tmp/empty` measures a
machine without). Memory is the sum of PSS (shared pages split between the processes that
map them, from /proc/PID/smaps_rollup) and of RSS over every process of the local fleet
(supervisor, nats-server, pollers), 5 s after ready.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe

ROOT = Path(__file__).resolve().parents[1]
FLEETCTL = Path(sys.executable).parent / "fleetctl"
SERVERS = (
    "version: 1\nservers:\n"
    "  - name: here\n    address: 192.0.2.10\n    roles: [broker-host, worker-host]\n"
)


def many_workers(n: int) -> str:
    lines = ["version: 1", "workers:"]
    for i in range(n):
        lines += [f"  - worker_id: wc-{i:02d}", "    llm: command", "    command: [wc, -w]"]
        lines += ["    host: here"]
    return "\n".join(lines) + "\n"


def fleet_processes(root: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = str(Path(entry / "cwd").readlink())
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(root)) or str(root) in cmdline:
            pids.append(int(entry.name))
    return pids


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(PSS, RSS) summed over `pids`, in KiB."""
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return pss, rss


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLEETCTL), *args], cwd=root, capture_output=True, text=True, check=True
    )


def measure(name: str, root: Path, runs: int) -> None:
    times = []
    memory: tuple[int, int] | None = None
    processes = started = 0
    for i in range(runs):
        began = time.perf_counter()
        summary = json.loads(run(root, "up", "--detach", "--json").stdout)
        times.append(time.perf_counter() - began)
        started = len(summary["started"])
        if i == 0:
            time.sleep(5)
            pids = fleet_processes(root)
            processes = len(pids)
            memory = memory_kib(pids)
        run(root, "down")
    assert memory is not None
    first, rest = times[0], times[1:] or times
    print(
        f"{name}, {started} started: up --detach to ready: "
        f"first (creates the store) {first:.2f} s, "
        f"then median {statistics.median(rest):.2f} s, worst {max(rest):.2f} s; "
        f"idle: {processes} processes, PSS {memory[0] / 1024:.0f} MiB, "
        f"RSS {memory[1] / 1024:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        example = Path(tmp) / "example"
        example.mkdir()
        shutil.copy(ROOT / "fleet.yaml", example)
        shutil.copy(ROOT / "servers.yaml", example)
        measure("example fleet (7 enabled workers)", example, args.runs)
        many = Path(tmp) / "many"
        many.mkdir()
        (many / "fleet.yaml").write_text(many_workers(args.workers))
        (many / "servers.yaml").write_text(SERVERS)
        measure(f"{args.workers} command workers", many, args.runs)


if __name__ == "__main__":
    main()
