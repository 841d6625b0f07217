"""Publish-to-result latency through a 3-broker cluster (every stream on three copies)
against a single broker, in the same run.

    .venv/bin/python bench/bench_cluster.py [--tasks 200]

Two local fleets, each in a temporary directory: `fleetctl up` (one nats-server) and
`fleetctl up --brokers 3` (three on loopback, routes over TLS, nats.replicas 3), each with
one `wc -w` command worker. Tasks go one at a time, alternating between the fleets (so
both see the same machine load), each timed from `Client.send` to its stored result as
`Client.wait` sees it (which looks at the results stream every 2 ms at first, backing off
to 100 ms). The first 10 tasks of each are a warm-up and not counted. The figure includes
the poller's pull, running `wc -w` and storing the result: what a user waits for.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from fleetctl.tasks.client import Client

FLEETCTL = Path(sys.executable).parent / "fleetctl"
SERVERS = (
    "version: 1\nservers:\n"
    "  - name: here\n    address: 192.0.2.10\n    roles: [broker-host, worker-host]\n"
)
FLEET = (
    "version: 1\nworkers:\n"
    "  - worker_id: wc\n    llm: command\n    command: [wc, -w]\n    host: here\n"
)
WARM_UP = 10


def fleetctl(root: Path, *args: str) -> None:
    subprocess.run([str(FLEETCTL), *args], cwd=root, capture_output=True, text=True, check=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    print(describe())
    shapes = {"one broker": (), "3-broker cluster, R3": ("--brokers", "3")}
    timings: dict[str, list[float]] = {name: [] for name in shapes}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        clients: dict[str, Client] = {}
        for i, (name, extra) in enumerate(shapes.items()):
            root = Path(tmp) / f"fleet-{i}"
            root.mkdir()
            (root / "fleet.yaml").write_text(FLEET)
            (root / "servers.yaml").write_text(SERVERS)
            fleetctl(root, "up", "--detach", *extra)
            stack.callback(fleetctl, root, "down")
            clients[name] = stack.enter_context(Client.open(root / "fleet.yaml"))
        for i in range(args.tasks + WARM_UP):
            order = list(clients.items()) if i % 2 == 0 else list(clients.items())[::-1]
            for name, client in order:
                began = time.perf_counter()
                sent = client.send(f"task {i} of the bench", to=["wc"])
                [result] = client.wait(sent, timeout=60)
                elapsed = time.perf_counter() - began
                assert result.final, f"{name}: task {i} has no result within 60 s"
                if i >= WARM_UP:
                    timings[name].append(elapsed * 1000)
    for name, ms in timings.items():
        print(
            f"{name}: {len(ms)} tasks, publish to result median {statistics.median(ms):.1f} ms, "
            f"p90 {percentile(ms, 0.9):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
            f"worst {max(ms):.1f} ms"
        )


if __name__ == "__main__":
    main()
