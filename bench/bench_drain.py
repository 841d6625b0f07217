"""An apply that changes every worker while each runs a long task, on simulated SSH hosts:
1 broker-host + 2 worker hosts with 5 `llm: command` workers each (10 workers running the
stand-in CLI).

Run: .venv/bin/python bench/bench_drain.py [--task 20] [--rounds 1]
Needs root (see tests/support/simhosts.py); without it the bench says why and exits 0.

Each round, for each mode (`drain`: apply as it is; `no-drain`: `apply --no-drain`), in turn:
1. sends one task to each of the 10 workers (`fleetctl task send --to ... --wait`), whose
   stand-in CLI sleeps `--task` seconds, and waits until all 10 CLIs are running;
2. changes all 10 workers (their `task_timeout`, so each poller restarts) and times
   `fleetctl apply --all --yes`, counting the lines it prints about what each restart waits
   for (`draining w1-1: 1 task, up to 6m`, or with --no-drain `handing back ... now`);
3. waits for the 10 results and counts: tasks completed by their first delivery (attempt 1),
   tasks that ran more than once (a result with attempt > 1: their first run was killed or
   handed back and paid again), and tasks lost (no result).
Target, drain mode: 10 completed once, 0 re-run, 0 lost. Exits 1 if it is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from tests.e2e.fleet_env import BROKER, FleetEnv, install_standins, prepare_wheelhouse, worker
from tests.support.simhosts import SimNet, skip_reason

NODES = ("node-1", "node-2")
PER_HOST = 5


def workers() -> list[str]:
    return [f"w{i}-{j}" for i in range(1, len(NODES) + 1) for j in range(1, PER_HOST + 1)]


@contextmanager
def fleet(workdir: Path) -> Iterator[FleetEnv]:
    with SimNet(workdir / "net", [BROKER, *NODES]) as net:
        install_standins(net, NODES)
        entries = [worker(w, NODES[int(w[1]) - 1]) for w in workers()]
        env = FleetEnv(net, workdir, entries, NODES)
        env.write()
        yield env


@dataclass
class Round:
    mode: str
    apply_s: float
    draining: int
    once: int
    rerun: int
    lost: int

    def line(self) -> str:
        return (
            f"{self.mode:<9} {self.apply_s:>8.1f} {self.draining:>9} {self.once:>13} "
            f"{self.rerun:>7} {self.lost:>5}"
        )


HEADER = f"{'mode':<9} {'apply s':>8} {'said':>9} {'done once':>13} {'re-run':>7} {'lost':>5}"


def running(env: FleetEnv) -> int:
    return sum(len(env.sh(n, "pgrep -f standin.py || true").split()) for n in NODES)


def one_round(env: FleetEnv, mode: str, task_s: int, timeout: int) -> Round:
    task = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
    targets = [a for w in workers() for a in ("--to", w)]
    sent = env.popen(
        "task", "send", f'standin: {{"sleep": {task_s}}}', *targets, "--id", task,
        "--wait", "--wait-timeout", f"{task_s * 6}s", "--json",
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while running(env) < len(workers()):
        if time.monotonic() > deadline:
            sys.exit(f"bench_drain: only {running(env)} of {len(workers())} tasks started")
        time.sleep(0.2)
    for w in workers():
        env.set_worker(w, task_timeout=f"{timeout}s")
    args = ["apply", "--all", "--yes"] + (["--no-drain"] if mode == "no-drain" else [])
    start = time.perf_counter()
    done = env.fleetctl(*args, timeout=900)
    apply_s = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench_drain: apply failed:\n{done.stdout}{done.stderr}")
    draining = done.stderr.count(": draining ") + done.stderr.count("now (--no-drain)")
    out, err = sent.communicate(timeout=task_s * 8)
    results = json.loads(out)["results"] if out.strip() else []
    by_worker = {r["worker_id"]: r for r in results}
    once = sum(1 for r in by_worker.values() if r["status"] == "completed" and r["attempt"] == 1)
    rerun = sum(1 for r in by_worker.values() if r["attempt"] > 1)
    lost = len(workers()) - len(by_worker)
    if sent.returncode not in (0, 1):
        sys.exit(f"bench_drain: task send failed:\n{out}{err}")
    return Round(mode, apply_s, draining, once, rerun, lost)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", type=int, default=20, help="seconds each task runs")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    reason = skip_reason()
    if reason is not None:
        print(f"bench_drain: skipped: {reason}")
        return 0
    print(f"machine: {describe()}")
    prepare_wheelhouse()
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp, fleet(Path(tmp)) as env:
        done = env.fleetctl("apply", "--all", "--issue-creds", "--yes", timeout=900)
        if done.returncode != 0:
            sys.exit(f"bench_drain: first apply failed:\n{done.stdout}{done.stderr}")
        timeout = 300
        for _ in range(args.rounds):
            for mode in ("drain", "no-drain"):
                timeout += 60  # a new task_timeout each time: every poller restarts
                rounds.append(one_round(env, mode, args.task, timeout))
    print(f"10 workers on 2 hosts, each running a {args.task} s task when apply restarts it")
    print(HEADER)
    for r in rounds:
        print(r.line())
    missed = [r for r in rounds if r.mode == "drain" and (r.once, r.rerun, r.lost) != (10, 0, 0)]
    if missed:
        print("target missed: every task completed once in drain mode")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
