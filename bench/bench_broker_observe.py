"""What naming the broker's nats-server by its sha256 costs the broker's observation.

Every plan observes the broker with the host agent. The agent used to run the installed
`nats-server --version`; it now hashes the binary instead (docs/security.md, "Supply
chain"), so that a plan runs nothing fleet.yaml named. This times one observe request of the
agent on this machine's python3, as the broker runs it, with and without the nats-server
package (hashed), interleaved; and `nats-server --version` alone, which the hash replaced.

Run: .venv/bin/python bench/bench_broker_observe.py [--rounds 40]
Needs the pinned nats-server beside this Python (./dev setup). No target: the figures are in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from fleetctl.reconcile import agent_client


def _observe(program: bytes) -> float:
    start = time.perf_counter()
    subprocess.run(list(agent_client.AGENT_ARGV), input=program, capture_output=True, check=True)
    return time.perf_counter() - start


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.is_file():
        print(f"no nats-server beside {sys.executable}: run ./dev setup")
        return
    base = {"op": "observe", "state_dir": "/nonexistent", "versions": {}}
    plain = agent_client.agent_program(base)
    hashed = agent_client.agent_program(
        base | {"versions": {"nats-server": str(binary)}, "hashed": ["nats-server"]}
    )
    without, with_hash, version = [], [], []
    for _ in range(args.rounds):
        without.append(_observe(plain))
        with_hash.append(_observe(hashed))
        version.append(_run([str(binary), "--version"]))
    size = binary.stat().st_size / 1024**2
    print(describe())
    print(
        f"observe without nats-server:           median {statistics.median(without) * 1e3:.1f} ms"
    )
    print(
        f"observe hashing nats-server ({size:.0f} MiB): "
        f"median {statistics.median(with_hash) * 1e3:.1f} ms"
    )
    print(
        f"nats-server --version alone:            median {statistics.median(version) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
