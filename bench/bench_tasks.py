"""Tasks through fleetctl.tasks.client against the same loop in raw nats-py, on one local
nats-server with 10 real pollers (command backend running `true`, so the figures are the
bus and the poller, not a CLI).

    .venv/bin/python bench/bench_tasks.py [--n 1000] [--workers 10] [--one-by-one 100]

Burst: `--n` tasks published at once, spread over the workers, then every result awaited;
tasks/s is n over the time from the first publish to the last result, and publish-to-result
includes the wait in the queue. One by one: a task, its result, the next (no queueing), over
the same workers. Raw: `js.publish` with the same per-target Nats-Msg-Id, results taken from
a core subscription on the result subjects (what a NATS programmer would write).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleetfiles import write_command_fleet
from bench.machine import describe
from fleetctl.bus import resources as natsresources
from fleetctl.config.schema import NatsSettings
from fleetctl.tasks.client import Client, Sent
from fleetctl.tasks.messages import Result, build, dedup_id
from tests.support.natsserver import running_nats_server
from tests.support.poller_harness import poller_env


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def figures(label: str, latencies: list[float], seconds: float) -> dict[str, Any]:
    return {
        "loop": label,
        "tasks": len(latencies),
        "tasks_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(pct(latencies, 50) * 1000, 1),
        "p99_ms": round(pct(latencies, 99) * 1000, 1),
    }


async def declare(url: str, workers: list[str]) -> None:
    settings = NatsSettings(ack_wait=30, duplicate_window=120)
    nc = await nats.connect(url)
    for spec in natsresources.streams(settings):
        config = spec.api_config() | {"storage": "file"}
        await nc.request(f"$JS.API.STREAM.CREATE.{spec.name}", json.dumps(config).encode())
    for w in workers:
        c = natsresources.worker_consumer(settings, w, 1)
        body = {"stream_name": c.stream, "config": c.api_config()}
        await nc.request(
            f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}", json.dumps(body).encode()
        )
    await nc.close()


def through_client(client: Client, workers: list[str], n: int, tag: str) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    done_at: dict[str, float] = {}

    def seen(results: list[Result]) -> None:
        now = time.perf_counter()
        for r in results:
            tid = r.body.get("task_id")
            if r.final and isinstance(tid, str):
                done_at.setdefault(tid, now)

    start = time.perf_counter()
    sents: list[Sent] = []
    for i in range(n):
        task_id = f"{tag}-{i}"
        sent_at[task_id] = time.perf_counter()
        sents.append(client.send("bench", to=[workers[i % len(workers)]], task_id=task_id))
    results = client.wait(sents, timeout=600, on_update=seen)
    end = time.perf_counter()
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    return figures("fleetctl.tasks.client", [done_at[t] - sent_at[t] for t in sent_at], end - start)


def client_one_by_one(client: Client, workers: list[str], n: int) -> dict[str, Any]:
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        sent = client.send("bench", to=[workers[i % len(workers)]], task_id=f"one-{i}")
        (result,) = client.wait(sent, timeout=60)
        assert result.ok, result
        latencies.append(time.perf_counter() - t0)
    return figures("fleetctl.tasks.client", latencies, time.perf_counter() - start)


async def raw_loop(
    url: str, workers: list[str], n: int, tag: str, one_by_one: bool
) -> dict[str, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sent_at: dict[str, float] = {}
    done_at: dict[str, float] = {}
    all_done = asyncio.Event()
    one_done = asyncio.Event()

    async def on_result(msg: Any) -> None:
        task_id = msg.subject.split(".")[-1]
        if task_id in sent_at and task_id not in done_at:
            done_at[task_id] = time.perf_counter()
            one_done.set()
            if len(done_at) == n:
                all_done.set()

    await nc.subscribe("af.result.*.*", cb=on_result)
    start = time.perf_counter()
    for i in range(n):
        task_id, worker = f"{tag}-{i}", workers[i % len(workers)]
        one_done.clear()
        sent_at[task_id] = time.perf_counter()
        headers = {"Nats-Msg-Id": dedup_id(task_id, worker)}
        await js.publish(f"af.worker.{worker}.inbox", build(task_id, "bench"), headers=headers)
        if one_by_one:
            await asyncio.wait_for(one_done.wait(), 60)
    await asyncio.wait_for(all_done.wait(), 600)
    end = time.perf_counter()
    await nc.close()
    return figures("raw nats-py", [done_at[t] - sent_at[t] for t in sent_at], end - start)


def run(n: int, count: int, one: int) -> dict[str, Any]:
    workers = [f"w{i}" for i in range(count)]
    with tempfile.TemporaryDirectory() as d, running_nats_server(Path(d)) as server:
        root = Path(d)
        asyncio.run(declare(server.url, workers))
        procs = []
        for w in workers:
            work = root / "work" / w
            work.mkdir(parents=True)
            env = poller_env(server.url, w, work, COMMAND_ARGV=json.dumps(["true"]))
            log = (work / "poller.log").open("ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "poller"], env=env, stderr=log))
        try:
            time.sleep(2)  # every poller bound to its consumer
            fleet_path = write_command_fleet(root, workers)
            out: dict[str, Any] = {
                "machine": describe(),
                "workers": count,
                "burst": [],
                "one_by_one": [],
            }
            with Client.open(fleet_path, server=server.url) as client:
                out["one_by_one"].append(client_one_by_one(client, workers, one))
                out["one_by_one"].append(
                    asyncio.run(raw_loop(server.url, workers, one, "raw1", True))
                )
                out["burst"].append(through_client(client, workers, n, "burst"))
            out["burst"].append(asyncio.run(raw_loop(server.url, workers, n, "rawb", False)))
            return out
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(15)


def main(argv: list[str] | None = None, emit: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--one-by-one", type=int, default=100)
    args = parser.parse_args(argv)
    emit(json.dumps(run(args.n, args.workers, args.one_by_one), indent=2))


if __name__ == "__main__":
    main()
