"""The dashboard at scale: server time of the Tasks and Task pages with many stored tasks.

    .venv/bin/python bench/bench_dashboard.py [--tasks 10000] [--per-task 3] [--requests 30]

One local nats-server, no pollers: the task records bucket holds `--tasks` records (each
task sent to `--per-task` of ten workers) and the results stream one result per target
(a third of them failed, each with a small code change). The dashboard's app runs in this
process (Starlette's TestClient: no socket, so the time is the app's own: routing, the
index or the bus, the template); it reads the bus as the dashboard does, by subject, and
its Tasks page from the index loaded once at start. Printed: how long the start took, then
each page's median and 95th percentile over `--requests` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKERS = [f"w{i}" for i in range(10)]
PATCH = (
    "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n"
    ' import os\n+def two() -> int:  # the second\n+    return len("two")\n'
)


def _record(task_id: str, at: str, workers: list[str]) -> dict[str, Any]:
    targets = [{"worker_id": w, "msg_id": f"{task_id}:{w}", "stream_seq": 0} for w in workers]
    sender = {"user": "fleet-publisher", "public_key": None, "login": "bench@here"}
    return {
        "version": 1,
        "task_id": task_id,
        "at": at,
        "last_at": at,
        "sends": 1,
        "sender": sender,
        "route": None,
        "repo": "app",
        "ref": "main",
        "task_bytes": 100,
        "targets": targets,
    }


def _result(task_id: str, worker: str, failed: bool) -> dict[str, Any]:
    code = {
        "repo": "app",
        "files": [{"path": "app.py", "status": "modified", "insertions": 2, "deletions": 0}],
        "insertions": 1,
        "deletions": 0,
        "patch": PATCH,
        "check": {"passed": not failed, "exit_code": int(failed)},
    }
    return {
        "version": 1,
        "task_id": task_id,
        "worker_id": worker,
        "status": "failed" if failed else "completed",
        "output": f"answer of {worker} to {task_id}\n" * 5,
        "duration_s": 12.5,
        "cost_usd": 0.0123,
        "usage": {"input_tokens": 1000, "output_tokens": 200},
        "model": "m1",
        "code": code,
    }


async def fill(url: str, tasks: int, per_task: int) -> None:
    import nats

    from fleetctl.bus import resources as natsresources
    from fleetctl.config.schema import NatsSettings

    nc = await nats.connect(url)
    js = nc.jetstream()
    for spec in natsresources.streams(NatsSettings()):
        config = spec.api_config() | {"storage": "file"}
        await nc.request(f"$JS.API.STREAM.CREATE.{spec.name}", json.dumps(config).encode())
    pending = []
    for i in range(tasks):
        task_id = f"task-{i:06d}"
        day, hour, minute, second = 1 + i // 86400 % 28, i // 3600 % 24, i // 60 % 60, i % 60
        at = f"2026-12-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
        workers = [WORKERS[(i + k) % len(WORKERS)] for k in range(per_task)]
        record = json.dumps(_record(task_id, at + ".000+00:00", workers)).encode()
        pending.append(js.publish(f"$KV.AF_RECORDS.{task_id}", record))
        for k, w in enumerate(workers):
            body = json.dumps(_result(task_id, w, failed=(i + k) % 3 == 0)).encode()
            pending.append(js.publish(f"af.result.{w}.{task_id}", body))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()


def timed(client: Any, path: str, n: int) -> dict[str, Any]:
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        size = len(response.content)
    first = times[0]  # a Task page's first look pays for its diffs' colouring (then cached)
    times.sort()
    return {
        "path": path,
        "first_ms": round(first * 1000, 1),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1),
        "bytes": size,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from starlette.testclient import TestClient

    from bench.fleetfiles import write_command_fleet
    from bench.machine import describe
    from fleetctl.config.loader import load_fleet
    from fleetctl.dashboard.app import create_app
    from fleetctl.dashboard.source import Source
    from fleetctl.identity.natsaccess import DASHBOARD_USER
    from fleetctl.tasks.client import Client
    from fleetctl.tasks.reach import BusOptions
    from tests.support.natsserver import running_nats_server

    with tempfile.TemporaryDirectory() as d, running_nats_server(Path(d)) as server:
        t0 = time.perf_counter()
        asyncio.run(fill(server.url, args.tasks, args.per_task))
        filled = time.perf_counter() - t0
        fleet_path = write_command_fleet(Path(d), WORKERS)
        fleet = load_fleet(fleet_path, fleet_path.parent / "servers.yaml")
        options = BusOptions(server.url, None)
        with Client.reaching(fleet, fleet_path, options, DASHBOARD_USER) as client:
            t0 = time.perf_counter()
            source = Source(client, fleet_path, on_server=True)
            source.start()
            started = time.perf_counter() - t0
            middle = f"task-{args.tasks // 2:06d}"
            with TestClient(create_app(source)) as web:
                pages = [
                    timed(web, "/tasks", args.requests),
                    timed(web, "/tasks?page=100", args.requests),
                    timed(web, "/tasks?status=failed&worker=w3&q=task-00", args.requests),
                    timed(web, f"/tasks/{middle}", args.requests),
                    timed(web, f"/tasks/{middle}?a=w0&b=w1", args.requests),
                    timed(web, f"/api/tasks/{middle}", args.requests),
                    # tasks never looked at before: every look a first one
                    *(timed(web, f"/tasks/task-{i:06d}", 1) for i in (1, 2, 3)),
                ]
    return {
        "machine": describe(),
        "stored": {"tasks": args.tasks, "results": args.tasks * args.per_task},
        "fill_s": round(filled, 1),
        "dashboard_start_s": round(started, 2),
        "indexed_tasks": len(source.index),
        "pages": pages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--per-task", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30)
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
