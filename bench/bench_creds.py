"""Issue credentials for 1,000 workers: key pair, signed user JWT, .nk, user .jwt and .creds.

Run: .venv/bin/python bench/bench_creds.py [--workers 1000] [--repeat 5]
Budget: at most 1.0 s for 1,000 workers (best of --repeat runs, each on a fresh store).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import describe
from fleetctl.bus.names import NatsNames
from fleetctl.identity import natsaccess as na
from nsc.authority import Authority
from nsc.store import NscDirs

BUDGET_S = 1.0


def one_run(workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        authority = Authority.create(NscDirs.under(Path(tmp)))
        names = NatsNames("af")
        ids = [f"w{i:04d}" for i in range(workers)]
        start = time.perf_counter()
        for wid in ids:
            authority.issue_user(na.worker_user(wid), na.worker_permissions(names, wid))
        elapsed = time.perf_counter() - start
        assert len(list((Path(tmp) / "keys" / "creds").rglob("*.creds"))) == workers
        return elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    runs = [one_run(args.workers) for _ in range(args.repeat)]
    best, median = min(runs), statistics.median(runs)
    print(
        f"issue creds for {args.workers} workers (keys, JWTs, .nk/.jwt/.creds files): "
        f"best {best:.3f} s, median {median:.3f} s over {args.repeat} runs "
        f"({best / args.workers * 1e6:.0f} us/worker)"
    )
    print(f"machine: {describe()}")
    ok = best <= BUDGET_S * args.workers / 1000
    print(f"budget {BUDGET_S:.1f} s per 1,000: {'OK' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
