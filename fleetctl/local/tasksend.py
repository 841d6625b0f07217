"""Send one task to some workers of a running local fleet and wait for their results.

A stopgap for the demo and for `fleetctl up`'s hint until `fleetctl task send --wait` exists:
it publishes as fleet-publisher, one copy per worker (Nats-Msg-Id `<task_id>:<worker>`: the
task stream deduplicates ids stream-wide, so the bare task id would drop every copy after
the first), then reads each worker's
result as docs/messages.md says (the last message on `<prefix>.result.<worker>.<task_id>`,
attributed by its subject). usage: python -m fleetctl.local.tasksend [--state-dir DIR]
[--timeout S] --text TEXT WORKER...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fleetctl.bus import client as bus_client
from fleetctl.local.state import StateDir, default_state_dir, pid_alive, read_json
from fleetctl.natsaccess import PUBLISHER_INBOX_PREFIX, PUBLISHER_USER
from fleetctl.natsnames import NatsNames


class NotRunning(Exception):
    pass


def publisher(state: StateDir) -> bus_client.Endpoint:
    """The bus of the local fleet recorded in up.json, as fleet-publisher."""
    record = read_json(state.up_json)
    if record is None or not pid_alive(int(record.get("pid", 0))):
        raise NotRunning(f"no local fleet is running in {state.root} (start one: fleetctl up)")
    who = bus_client.Identity(
        PUBLISHER_USER, Path(record["creds"][PUBLISHER_USER]), PUBLISHER_INBOX_PREFIX
    )
    return bus_client.at(str(record["nats_url"]), who)


async def _send(
    endpoint: bus_client.Endpoint, names: NatsNames, workers: list[str], text: str, task_id: str
) -> None:
    nc = await bus_client.connect(endpoint)
    try:
        js = nc.jetstream()
        for worker in workers:
            body = {"version": 1, "task_id": task_id, "instructions": text}
            msg_id = f"{task_id}:{worker}"
            payload = json.dumps(body).encode()
            await js.publish(names.inbox(worker), payload, headers={"Nats-Msg-Id": msg_id})
    finally:
        await nc.close()


async def _results(
    endpoint: bus_client.Endpoint,
    names: NatsNames,
    workers: list[str],
    task_id: str,
    timeout: float,
) -> dict[str, dict[str, Any]]:
    nc = await bus_client.connect(endpoint)
    found: dict[str, dict[str, Any]] = {}
    get = f"$JS.API.STREAM.MSG.GET.{names.results_stream}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            for worker in workers:
                if worker in found:
                    continue
                ask = {"last_by_subj": names.result(worker, task_id)}
                reply = await bus_client.request(nc, get, ask)
                if "message" in reply:
                    found[worker] = json.loads(base64.b64decode(reply["message"]["data"]))
            if len(found) == len(workers) or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


def send(state: StateDir, prefix: str, workers: list[str], text: str) -> str:
    """Publish one task to each worker's inbox; its task id."""
    task_id = f"task-{uuid.uuid4().hex[:12]}"
    bus_client.run(_send(publisher(state), NatsNames(prefix), workers, text, task_id))
    return task_id


def results(
    state: StateDir, prefix: str, workers: list[str], task_id: str, timeout: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Each worker's result for `task_id`, waiting up to `timeout` for all of them."""
    endpoint = publisher(state)
    return bus_client.run(_results(endpoint, NatsNames(prefix), workers, task_id, timeout))


def send_and_wait(
    state: StateDir, prefix: str, workers: list[str], text: str, timeout: float = 60.0
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The task id and each worker's result (missing: none within `timeout`)."""
    task_id = send(state, prefix, workers, text)
    return task_id, results(state, prefix, workers, task_id, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetctl.local.tasksend")
    parser.add_argument("-f", "--fleet", type=Path, default=Path("fleet.yaml"))
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--prefix", default="af")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--text", required=True)
    parser.add_argument("workers", nargs="+")
    args = parser.parse_args(argv)
    state = StateDir(args.state_dir or default_state_dir(args.fleet))
    try:
        task_id, results = send_and_wait(state, args.prefix, args.workers, args.text, args.timeout)
    except (NotRunning, bus_client.BusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"task_id": task_id, "results": results}, indent=2))
    return 0 if len(results) == len(args.workers) else 1


if __name__ == "__main__":
    sys.exit(main())
