"""A stream of tasks through a simulated cluster, and every result read back; run inside the
simulated LAN (SimNet.lan_argv) by tests/e2e/test_cluster.py while it hurts a broker.

usage: cluster_load.py SSH_CONFIG CREDS COUNT RATE TIMEOUT PREFIX WORKER... -- BROKER_ADDRESS...

As `fleet-publisher`, over an SSH forward to each broker (NATS listens on their loopback) and
connected to all of them: publishes COUNT tasks at RATE per second, round robin over the
workers, each with its id as Nats-Msg-Id; a publish whose PubAck does not come (a broker
going away) is sent again with the same id (the stream drops the duplicate), as a careful
publisher would. Then reads every task's result from the results stream (a direct get by
its subject) until all are there or TIMEOUT. Prints JSON: each task's worker, publish
attempts and whether its result was stored, with the result's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import nats

from fleetctl.identity.natsaccess import PUBLISHER_INBOX_PREFIX
from fleetctl.transport.ssh import SshTransport

# The task each worker's stand-in CLI runs: long enough to be running when a broker goes.
INSTRUCTIONS = 'standin: {"sleep": 0.4}'


async def _publish(js: Any, subject: str, task: dict[str, Any], deadline: float) -> int:
    """Until the stream acknowledges it; the attempts it took."""
    attempts = 0
    while True:
        attempts += 1
        try:
            await js.publish(
                subject,
                json.dumps(task).encode(),
                headers={"Nats-Msg-Id": task["task_id"]},
                timeout=2,
            )
            return attempts
        except Exception:
            if time.monotonic() > deadline:
                return -attempts
            await asyncio.sleep(0.2)


async def _result(nc: Any, worker: str, task_id: str) -> dict[str, Any] | None:
    subject = f"$JS.API.DIRECT.GET.AF_RESULTS.af.result.{worker}.{task_id}"
    try:
        msg = await nc.request(subject, b"", timeout=2)
    except Exception:
        return None
    if (msg.headers or {}).get("Status") or not msg.data:
        return None
    found: dict[str, Any] = json.loads(msg.data)
    return found


async def run(
    urls: list[str],
    creds: str,
    count: int,
    rate: float,
    timeout: float,
    prefix: str,
    workers: list[str],
) -> dict[str, Any]:
    async def quiet(_: Exception) -> None:
        return None

    nc = await nats.connect(
        urls,
        user_credentials=creds,
        inbox_prefix=PUBLISHER_INBOX_PREFIX,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=quiet,
    )
    js = nc.jetstream()
    tasks: dict[str, dict[str, Any]] = {}
    start = time.monotonic()
    deadline = start + timeout
    published = asyncio.Event()

    async def read_results() -> None:
        """Meanwhile: each task's result, as soon as it is stored (within half a second)."""
        while time.monotonic() < deadline:
            waiting = [(t, e) for t, e in list(tasks.items()) if e["result"] is None]
            if published.is_set() and not waiting:
                return
            for task_id, entry in waiting:
                found = await _result(nc, entry["worker"], task_id)
                if found is not None:
                    entry["result"] = {"status": found.get("status"), "host": found.get("host")}
                    entry["stored_s"] = round(time.monotonic() - start, 2)
            await asyncio.sleep(0.5)

    reader = asyncio.ensure_future(read_results())
    try:
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            worker = workers[i % len(workers)]
            task_id = f"{prefix}-{i:04d}"
            task = {"version": 1, "task_id": task_id, "instructions": INSTRUCTIONS}
            sent = time.monotonic() - start
            attempts = await _publish(js, f"af.worker.{worker}.inbox", task, deadline)
            tasks[task_id] = {"worker": worker, "attempts": attempts, "result": None}
            tasks[task_id]["sent_s"] = round(sent, 2)
        publishing = time.monotonic() - start
        published.set()
        await reader
        return {
            "published_in_s": round(publishing, 1),
            "done_in_s": round(time.monotonic() - start, 1),
            "tasks": tasks,
        }
    finally:
        reader.cancel()
        with contextlib.suppress(Exception):
            await nc.close()


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    ssh_config, creds, count, rate, timeout, prefix, *workers = args[:split]
    brokers = args[split + 1 :]
    with contextlib.ExitStack() as stack:
        urls = []
        for address in brokers:
            transport = SshTransport(
                address, address, user="root", port=22, ssh_config=Path(ssh_config)
            )
            stack.callback(transport.close)
            port = stack.enter_context(transport.forward("127.0.0.1", 4222))
            urls.append(f"nats://127.0.0.1:{port}")
        answer = asyncio.run(
            run(urls, creds, int(count), float(rate), float(timeout), prefix, workers)
        )
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
