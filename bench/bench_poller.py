"""Measure the poller: publish-to-result latency, the same loop in raw nats-py, spawn cost,
throughput and idle RSS, in one run against a local nats-server.

    .venv/bin/python bench/bench_poller.py [--n 300] [--burst 500]

The poller runs as a real `python -m poller` with the command backend running `true`. The raw
loop runs in its own process too (`--raw-worker`): fetch, ack, publish a result; no CLI. The
overhead the poller adds is p50(poller) - p50(raw) - p50(spawn of `true`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from tests.support.natsserver import running_nats_server
from tests.support.poller_harness import poller_env, setup_bus


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def raw_worker(url: str, worker_id: str) -> None:
    """The loop without the poller: fetch, ack, store a result through JetStream."""
    nc = await nats.connect(url, inbox_prefix=f"_INBOX_{worker_id}")
    js = nc.jetstream()
    psub = await js.pull_subscribe_bind(f"worker-{worker_id}", "AF_TASKS")
    print("ready", flush=True)
    while True:
        try:
            [msg] = await psub.fetch(1, timeout=1)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        task = json.loads(msg.data)
        result = json.dumps({"task_id": task["task_id"], "status": "completed"}).encode()
        await js.publish(f"af.result.{worker_id}.{task['task_id']}", result)
        await msg.ack_sync()


async def round_trips(url: str, worker_id: str, n: int, warmup: int) -> list[float]:
    """Publish a task, wait for its result; one at a time."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    waiting: dict[str, asyncio.Future[float]] = {}

    async def on_result(msg: Any) -> None:
        tid = msg.subject.split(".")[3]  # af.result.<worker>.<task>
        fut = waiting.pop(tid, None)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    await nc.subscribe("af.result.*.*", cb=on_result)
    await nc.flush()
    out: list[float] = []
    for i in range(n + warmup):
        tid = f"{worker_id}-{i}"
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiting[tid] = fut
        t0 = time.perf_counter()
        await js.publish(
            f"af.worker.{worker_id}.inbox",
            json.dumps({"task_id": tid, "instructions": "bench"}).encode(),
        )
        t1 = await asyncio.wait_for(fut, 10)
        if i >= warmup:
            out.append((t1 - t0) * 1000)
    await nc.close()
    return out


async def burst(url: str, worker_id: str, n: int) -> float:
    """Publish n tasks at once; tasks per second until the last result is in."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    done = asyncio.Event()
    seen: set[str] = set()

    async def on_result(msg: Any) -> None:
        if msg.subject.startswith(f"af.result.{worker_id}.{worker_id}-burst-"):
            seen.add(msg.subject)
        if len(seen) == n:
            done.set()

    await nc.subscribe("af.result.*.*", cb=on_result)
    await nc.flush()
    t0 = time.perf_counter()
    for i in range(n):
        await js.publish(
            f"af.worker.{worker_id}.inbox",
            json.dumps({"task_id": f"{worker_id}-burst-{i}", "instructions": "b"}).encode(),
        )
    await asyncio.wait_for(done.wait(), 120)
    took = time.perf_counter() - t0
    await nc.close()
    return n / took


async def spawn_true(n: int) -> list[float]:
    """What running `true` costs from an asyncio loop, no NATS."""
    out = []
    true = shutil.which("true") or "true"
    for _ in range(n + 20):
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            true,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        await proc.communicate(b"bench")
        out.append((time.perf_counter() - t0) * 1000)
    return out[20:]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(n: int, burst_n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, running_nats_server(Path(d)) as server:
        work = Path(d) / "work"
        work.mkdir()
        for wid in ("bench", "raw"):
            await setup_bus(server.url, wid, ack_wait=60, max_deliver=5)
        env = poller_env(
            server.url, "bench", work, COMMAND_ARGV=json.dumps(["true"]), HEARTBEAT_INTERVAL="5"
        )
        env.pop("STANDIN_LOG")
        log = (work / "poller.log").open("wb")
        poller = subprocess.Popen([sys.executable, "-m", "poller"], env=env, stderr=log)
        raw = subprocess.Popen(
            [sys.executable, __file__, "--raw-worker", server.url], stdout=subprocess.PIPE
        )
        try:
            assert raw.stdout is not None
            raw.stdout.readline()
            await asyncio.sleep(3)  # let the poller settle before reading its idle RSS
            idle_rss = rss_mb(poller.pid)
            spawn = await spawn_true(n)
            raw_ms = await round_trips(server.url, "raw", n, 20)
            poller_ms = await round_trips(server.url, "bench", n, 20)
            tput = await burst(server.url, "bench", burst_n)
            raw_tput = await burst(server.url, "raw", burst_n)
        finally:
            for p in (poller, raw):
                p.terminate()
                p.wait(10)
    p50 = {
        k: statistics.median(v)
        for k, v in (("poller", poller_ms), ("raw", raw_ms), ("spawn", spawn))
    }
    return {
        "machine": describe(),
        "n": n,
        "poller_p50_ms": round(p50["poller"], 3),
        "poller_p99_ms": round(pct(poller_ms, 99), 3),
        "raw_p50_ms": round(p50["raw"], 3),
        "raw_p99_ms": round(pct(raw_ms, 99), 3),
        "spawn_true_p50_ms": round(p50["spawn"], 3),
        "spawn_true_p99_ms": round(pct(spawn, 99), 3),
        "overhead_p50_ms": round(p50["poller"] - p50["raw"] - p50["spawn"], 3),
        "throughput_tasks_per_s": round(tput, 1),
        "raw_throughput_tasks_per_s": round(raw_tput, 1),
        "idle_rss_mb": round(idle_rss, 1),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--raw-worker", metavar="URL")
    args = ap.parse_args()
    if args.raw_worker:
        asyncio.run(raw_worker(args.raw_worker, "raw"))
    else:
        print(json.dumps(asyncio.run(main(args.n, args.burst)), indent=2))
