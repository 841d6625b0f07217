"""Validate + offline plan of a generated fleet: 1,000 workers on 100 hosts.

Target: at most 1.0 s of wall time on the project's 2-core machine.
Run: .venv/bin/python -m bench.bench_plan   (docs/performance.md records the figures)
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from fleetctl.config.loader import load_fleet
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.ui.plan_view import print_plan

LLMS = ["claude-code", "codex", "gemini", "zai", "command"]


def generate(directory: Path, workers: int, hosts: int) -> tuple[Path, Path]:
    servers = [
        "version: 1",
        "servers:",
        "  - name: broker",
        "    address: 10.0.0.1",
        "    roles: [broker-host]",
    ]
    for h in range(1, hosts):
        servers += [
            f"  - name: node-{h:03d}",
            f"    address: 10.0.{h // 250}.{h % 250 + 2}",
            "    roles: [worker-host]",
            "    labels: {rack: r1}",
        ]
    fleet = ["version: 1", "nats: {ack_wait: 60s}", "defaults: {task_timeout: 30m}", "workers:"]
    for w in range(workers):
        llm = LLMS[w % len(LLMS)]
        fleet += [
            f"  - worker_id: w-{w:04d}",
            f"    llm: {llm}",
            "    model: some-model-1",
            "    lang: python",
            "    role: developer",
            f"    host: node-{w % (hosts - 1) + 1:03d}",
            f"    enabled: {w % 10 != 0}",
            "    labels: {team: core}",
        ]
        if llm == "zai":
            fleet.append(f"    env_file: /etc/fleet/env/w-{w:04d}.env")
        if llm == "command":
            fleet.append("    command: [/usr/local/bin/llm, --no-stream]")
    (directory / "servers.yaml").write_text("\n".join(servers) + "\n")
    (directory / "fleet.yaml").write_text("\n".join(fleet) + "\n")
    return directory / "fleet.yaml", directory / "servers.yaml"


def once(fleet_path: Path, servers_path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    fleet = load_fleet(fleet_path, servers_path)
    plan = make_plan(desired_state(fleet), revision=fleet.revision)
    print_plan(Console(file=io.StringIO(), width=200), plan)
    return time.perf_counter() - start, plan.summary.add


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fleet_path, servers_path = generate(Path(tmp), args.workers, args.hosts)
        times = []
        for _ in range(args.rounds):
            elapsed, added = once(fleet_path, servers_path)
            times.append(elapsed)
        cli = Path(sys.executable).parent / "fleetctl"
        start = time.perf_counter()
        subprocess.run(
            [str(cli), "-f", str(fleet_path), "-s", str(servers_path), "plan", "--dry-run"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        whole = time.perf_counter() - start
    print(f"fleet: {args.workers} workers on {args.hosts} hosts; plan: {added} to add")
    print(
        f"validate + offline plan + print, in process: median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s over {args.rounds} rounds (target <= 1.0 s)"
    )
    print(f"`fleetctl plan --dry-run` as a command, with interpreter start: {whole:.3f} s")


if __name__ == "__main__":
    main()
