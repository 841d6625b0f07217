"""A NATS client of the simulated broker, through an SSH forward to it; run inside the
simulated LAN (SimNet.lan_argv) by e2e tests. Prints its answer as JSON.

usage: e2e_client.py MODE BROKER_ADDRESS SSH_CONFIG CREDS ARG...
  tasks TIMEOUT WORKER...     publish one task to each worker, print their results
  stream PLAN_FILE            a steady stream of tasks (see `stream`), then their results
  drift CONSUMER ACK_WAIT_S   change a consumer's ack_wait behind fleetctl's back
  connect                     print "accepted" or "refused" for a client presenting CREDS
  sockopts                    the TCP options of fleetctl's SSH connection to the broker
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import nats

from fleetctl.identity.natsaccess import ADMIN_INBOX_PREFIX, PUBLISHER_INBOX_PREFIX
from fleetctl.transport.ssh import SshTransport


async def _publish(js: Any, worker: str, task_id: str, instructions: str) -> None:
    task = {"version": 1, "task_id": task_id, "instructions": instructions}
    await js.publish(
        f"af.worker.{worker}.inbox", json.dumps(task).encode(), headers={"Nats-Msg-Id": task_id}
    )


async def _results(
    nc: Any, wanted: dict[str, tuple[str, str]], timeout: float, step: float
) -> dict[str, Any]:
    """The result of each wanted (worker, task id), by its key, as many as are stored within
    `timeout` seconds (read again every `step`)."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(wanted) and time.monotonic() < deadline:
        for key, (worker, task_id) in wanted.items():
            if key in found:
                continue
            # The worker is who the subject says: only its creds can publish there.
            ask = {"last_by_subj": f"af.result.{worker}.{task_id}"}
            msg = await nc.request(
                "$JS.API.STREAM.MSG.GET.AF_RESULTS", json.dumps(ask).encode(), timeout=5
            )
            reply = json.loads(msg.data)
            if "message" in reply:
                found[key] = json.loads(base64.b64decode(reply["message"]["data"]))
        await asyncio.sleep(step)
    return found


async def exchange(url: str, creds: str, workers: list[str], timeout: float) -> dict[str, Any]:
    nc = await nats.connect(url, user_credentials=creds, inbox_prefix=PUBLISHER_INBOX_PREFIX)
    js = nc.jetstream()
    wanted: dict[str, tuple[str, str]] = {}
    try:
        for worker in workers:
            task_id = f"e2e-{worker}-{uuid.uuid4().hex[:8]}"
            await _publish(js, worker, task_id, f"say hello, {worker}")
            wanted[worker] = (worker, task_id)
        return await _results(nc, wanted, timeout, step=0.3)
    finally:
        await nc.close()


async def stream(url: str, creds: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Publish a task every `interval` seconds to the next of `workers` (their `prompts`,
    else `prompt`) until `stop_file` exists; then wait up to `wait` seconds for every
    task's result. Prints what was published and each result found (by task id)."""
    nc = await nats.connect(url, user_credentials=creds, inbox_prefix=PUBLISHER_INBOX_PREFIX)
    js = nc.jetstream()
    published: list[dict[str, str]] = []
    try:
        i = 0
        while not Path(plan["stop_file"]).exists():
            worker = plan["workers"][i % len(plan["workers"])]
            task_id = f"chaos-{i:04d}-{worker}"
            prompt = plan["prompts"].get(worker, plan["prompt"])
            await _publish(js, worker, task_id, prompt)
            published.append({"task_id": task_id, "worker": worker, "at": str(time.time())})
            i += 1
            await asyncio.sleep(plan["interval"])
        wanted = {p["task_id"]: (p["worker"], p["task_id"]) for p in published}
        found = await _results(nc, wanted, plan["wait"], step=0.5)
        return {"published": published, "results": found}
    finally:
        await nc.close()


async def drift(url: str, creds: str, consumer: str, ack_wait: int) -> None:
    nc = await nats.connect(url, user_credentials=creds, inbox_prefix=ADMIN_INBOX_PREFIX)
    try:
        info = await nc.request(f"$JS.API.CONSUMER.INFO.AF_TASKS.{consumer}", b"", timeout=5)
        config = json.loads(info.data)["config"]
        config["ack_wait"] = ack_wait * 1_000_000_000
        body = {"stream_name": "AF_TASKS", "config": config, "action": "update"}
        reply = await nc.request(
            f"$JS.API.CONSUMER.CREATE.AF_TASKS.{consumer}", json.dumps(body).encode(), timeout=5
        )
        assert "error" not in json.loads(reply.data), reply.data
    finally:
        await nc.close()


def broker(address: str, ssh_config: str) -> SshTransport:
    return SshTransport("broker", address, user="root", port=22, ssh_config=Path(ssh_config))


async def try_connect(url: str, creds: str) -> str:
    async def quiet(_: Exception) -> None:
        return None

    try:
        nc = await nats.connect(
            url, user_credentials=creds, allow_reconnect=False, connect_timeout=5, error_cb=quiet
        )
    except Exception:
        return "refused"
    await nc.close()
    return "accepted"


def main() -> None:
    mode, address, ssh_config, creds, *args = sys.argv[1:]
    transport = broker(address, ssh_config)
    answer: Any
    if mode == "sockopts":
        sock = transport._paramiko().sock
        tcp = socket.IPPROTO_TCP
        answer = {
            "nodelay": sock.getsockopt(tcp, socket.TCP_NODELAY),
            "user_timeout_ms": sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
        }
        transport.close()
        print(json.dumps(answer))
        return
    try:
        with transport.forward("127.0.0.1", 4222) as port:
            url = f"nats://127.0.0.1:{port}"
            if mode == "tasks":
                answer = asyncio.run(exchange(url, creds, args[1:], float(args[0])))
            elif mode == "stream":
                plan = json.loads(Path(args[0]).read_text())
                answer = asyncio.run(stream(url, creds, plan))
            elif mode == "drift":
                answer = asyncio.run(drift(url, creds, args[0], int(args[1])))
            else:
                answer = asyncio.run(try_connect(url, creds))
    finally:
        transport.close()
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
