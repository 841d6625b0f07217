"""What one `fleetctl results TASK` look costs as the window fills: requests and time.

    .venv/bin/python bench/bench_results.py [--window 5000] [--dead 500] [--queued 500]
        [--looks 20] [--against CHECKOUT]

One local nats-server, no pollers: the results stream holds `--window` results of other
tasks, the dead-letter stream `--dead` dead letters, the task stream `--queued` queued tasks
(ten workers). The probed task was sent to three workers: two have answered, the third's copy
is still queued, so a look must also find where that copy is (what each `--watch` look
repeats every 0.5 s). Each look is timed in a child process that imports fleetctl from this
checkout, or from `--against` (another checkout, e.g. one from before task records, whose
`results` command reads its window); the children alternate, three each, on the same bus.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKERS = [f"w{i}" for i in range(10)]
PROBE = "probe-1"


def look_once(client: Any, task_id: str) -> Any:
    """What the `results` command does for one look, in whichever fleetctl is imported."""
    if hasattr(client, "answers"):
        return client.answers(task_id).results
    import importlib

    # before task records: the stored results, plus every task in the window
    return importlib.import_module("fleetctl.cli.results")._all(client, task_id)


def measure(url: str, fleet_path: str, task_id: str, looks: int) -> dict[str, Any]:
    import fleetctl
    from fleetctl.tasks.client import Client

    with Client.open(fleet_path, server=url) as client:
        look_once(client, task_id)  # connections and imports warmed up
        times, msgs = [], []
        for _ in range(looks):
            before = client._conn.nc.stats["out_msgs"]
            t0 = time.perf_counter()
            found = look_once(client, task_id)
            times.append(time.perf_counter() - t0)
            msgs.append(client._conn.nc.stats["out_msgs"] - before)
    return {
        "fleetctl": str(Path(fleetctl.__file__).resolve().parents[1]),
        "states": ", ".join(sorted(f"{r.worker_id} {r.status}" for r in found)),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "requests_per_look": int(statistics.median(msgs)),
    }


async def fill(url: str, window: int, dead: int, queued: int) -> None:
    import nats

    sys.path.insert(0, str(ROOT))
    from fleetctl.bus import resources as natsresources
    from fleetctl.config.schema import NatsSettings

    settings = NatsSettings()
    nc = await nats.connect(url)
    js = nc.jetstream()
    for spec in natsresources.streams(settings):
        config = spec.api_config() | {"storage": "file"}
        await nc.request(f"$JS.API.STREAM.CREATE.{spec.name}", json.dumps(config).encode())
    for w in WORKERS:
        c = natsresources.worker_consumer(settings, w, 1)
        body = {"stream_name": c.stream, "config": c.api_config()}
        subject = f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}"
        await nc.request(subject, json.dumps(body).encode())
    pending = []
    for i in range(window):
        w, t = WORKERS[i % len(WORKERS)], f"other-{i}"
        result = {"version": 1, "task_id": t, "worker_id": w, "status": "completed", "output": "ok"}
        pending.append(js.publish(f"af.result.{w}.{t}", json.dumps(result).encode()))
    for i in range(dead):
        w = WORKERS[i % len(WORKERS)]
        letter = {"version": 1, "worker_id": w, "task_id": f"dead-{i}", "reason": "bench"}
        pending.append(js.publish(f"af.dead.{w}", json.dumps(letter).encode()))
    for i in range(queued):
        w = WORKERS[i % len(WORKERS)]
        task = {"version": 1, "task_id": f"queued-{i}", "instructions": "bench"}
        pending.append(js.publish(f"af.worker.{w}.inbox", json.dumps(task).encode()))
    for i in range(0, len(pending), 500):
        await asyncio.gather(*pending[i : i + 500])
    await nc.close()


async def answer(url: str, workers: list[str]) -> None:
    import nats

    nc = await nats.connect(url)
    for w in workers:
        result = {"version": 1, "task_id": PROBE, "worker_id": w, "status": "completed"}
        await nc.jetstream().publish(f"af.result.{w}.{PROBE}", json.dumps(result).encode())
    await nc.close()


def child(tree: Path, url: str, fleet: Path, looks: int) -> dict[str, Any]:
    env = dict(os.environ) | {"PYTHONPATH": str(tree)}
    argv = [sys.executable, __file__, "--measure", url, str(fleet), PROBE, str(looks)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=tree)
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from bench.fleetfiles import write_command_fleet
    from bench.machine import describe
    from fleetctl.tasks.client import Client
    from tests.support.natsserver import running_nats_server

    trees = [ROOT] + ([Path(args.against).resolve()] if args.against else [])
    with tempfile.TemporaryDirectory() as d, running_nats_server(Path(d)) as server:
        asyncio.run(fill(server.url, args.window, args.dead, args.queued))
        fleet = write_command_fleet(Path(d), WORKERS)
        with Client.open(fleet, server=server.url) as client:
            client.send("bench", to=WORKERS[:3], task_id=PROBE)
        asyncio.run(answer(server.url, WORKERS[:2]))
        runs = [child(tree, server.url, fleet, args.looks) for _ in range(3) for tree in trees]
    return {
        "machine": describe(),
        "window": {"results": args.window, "dead": args.dead, "queued": args.queued},
        "runs": runs,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        url, fleet, task_id, looks = sys.argv[2:6]
        print(json.dumps(measure(url, fleet, task_id, int(looks))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--dead", type=int, default=500)
    parser.add_argument("--queued", type=int, default=500)
    parser.add_argument("--looks", type=int, default=20)
    parser.add_argument("--against", metavar="CHECKOUT")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
