"""A small fleet for the task commands: a credentialed nats-server, real pollers with the
stand-in command CLI, and the fleet.yaml/servers.yaml the CLI checks targets against.

fleetctl reaches the bus with FLEETCTL_NATS_URL / FLEETCTL_NATS_CREDS (the publisher's
creds), the way a coordinator on another machine would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetctl.bus import resources as natsresources
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet as FleetModel
from fleetctl.config.routes import queues_of
from fleetctl.identity import natsaccess as na
from fleetctl.reconcile.desired.bus import bus_state
from fleetctl.reconcile.desired.poller_env import poller_unit_environment
from tests.support.nscfleet import (
    Fleet,
    connect,
    create_resources,
    fleet_server,
    js_api,
    make_fleet,
)
from tests.support.poller_harness import Poller, poller_env

FLEETCTL = str(Path(sys.executable).parent / "fleetctl")


@dataclass
class TaskFleet:
    fleet: Fleet
    url: str
    dir: Path
    pollers: dict[str, Poller] = field(default_factory=dict)

    @property
    def fleet_path(self) -> Path:
        return self.dir / "fleet.yaml"

    def env(self, admin: bool = False) -> dict[str, str]:
        user = self.fleet.admin if admin else self.fleet.publisher
        env = dict(os.environ)
        env |= {
            "FLEETCTL_NATS_URL": self.url,
            "FLEETCTL_NATS_CREDS": str(user.creds_path),
            "FLEETCTL_FLEET": str(self.fleet_path),
            "FLEETCTL_SERVERS": str(self.dir / "servers.yaml"),
            "COLUMNS": "200",
        }
        return env

    def fleetctl(
        self, *args: str, stdin: str | None = None, timeout: float = 60, admin: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """As the publisher, or as fleet-admin (`status`)."""
        return subprocess.run(
            [FLEETCTL, *args],
            capture_output=True,
            text=True,
            env=self.env(admin),
            input=stdin,
            timeout=timeout,
        )

    def popen(self, *args: str, admin: bool = False) -> subprocess.Popen[str]:
        """Started, not waited for: its stdout and stderr are pipes, read as it runs."""
        return subprocess.Popen(
            [FLEETCTL, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(admin),
        )

    def runs(self, worker: str) -> list[dict[str, Any]]:
        """The stand-in CLI's starts on one worker (each is one run of a task)."""
        log = self.dir / "work" / worker / "standin.jsonl"
        if not log.exists():
            return []
        recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return [r for r in recs if r["phase"] == "start"]

    def stored_tasks(self) -> int:
        """Messages ever stored in the task stream (its last sequence)."""

        async def go() -> int:
            async with connect(self.url, self.fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
                info = await admin.nc.jetstream().stream_info(self.fleet.names.task_stream)
                return int(info.state.last_seq)

        return asyncio.run(go())


def _fleet_yaml(
    workers: dict[str, dict[str, Any]],
    routes: dict[str, Any],
    ack_wait: int,
    top: dict[str, Any],
) -> dict[str, Any]:
    entries = []
    for wid, extra in workers.items():
        entry: dict[str, Any] = {"worker_id": wid, "llm": "command", "host": "node-1"}
        entry |= {k: v for k, v in extra.items() if k != "env"}
        if entry["llm"] == "command":  # what fleet.yaml says; the poller runs the stand-in
            entry.setdefault("command", ["/bin/true"])
        entries.append(entry)
    nats = {"ack_wait": f"{ack_wait}s", "duplicate_window": "60s"}
    body: dict[str, Any] = {"version": 1, "nats": nats, "workers": entries}
    if routes:
        body["routes"] = routes
    return body | top


def _repos_environment(model: FleetModel, worker_id: str, root: Path, work: Path) -> dict[str, str]:
    """The worker's REPOS_FILE as fleetctl renders it, its paths under `root` (the mirrors
    made as provisioning makes them, once)."""
    from fleetctl.reconcile.desired.repos import RepoPaths, git_config, repos_file

    worker = next(w for w in model.workers if w.id == worker_id)
    if not worker.repos:
        return {}
    paths = RepoPaths(mirrors=str(root / "mirrors"), etc=str(root / "etc"))
    for name in worker.repos:
        mirror = Path(paths.mirror(name))
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "--bare", str(mirror)], check=True)
            subprocess.run(
                ["git", "-C", str(mirror), "config", "core.sharedRepository", "group"], check=True
            )
            config = Path(paths.file(name, "gitconfig"))
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_bytes(git_config(model.repos[name], paths))
    path = work / "repos.json"
    path.write_bytes(repos_file(model, worker, paths, str(work / "worktrees")))
    path.chmod(0o600)
    return {"REPOS_FILE": str(path)}


BUDGET_VARIABLES = (
    "NATS_SPEND_BUCKET",
    "BUDGET_DAILY_USD",
    "BUDGET_FLEET_DAILY_USD",
    "CLAUDE_MAX_BUDGET_USD",  # per_task_usd, on a claude worker
)


def _budget_environment(model: FleetModel, worker_id: str) -> dict[str, str]:
    """fleet.yaml's budgets, as fleetctl renders them into the worker's unit."""
    worker = next(w for w in model.workers if w.id == worker_id)
    rendered = dict(poller_unit_environment(model, worker))
    return {k: v for k, v in rendered.items() if k in BUDGET_VARIABLES}


@contextmanager
def task_fleet(
    root: Path,
    workers: dict[str, dict[str, Any]],
    routes: dict[str, Any] | None = None,
    *,
    ack_wait: int = 60,
    top: dict[str, Any] | None = None,
    broker_config: str = "",
    repos: Path | None = None,
    **poller_extra: str,
) -> Iterator[TaskFleet]:
    """`workers`: id -> extra fleet.yaml fields (labels, lang, enabled: false...), and `env`:
    the poller's own extra variables; `top`: more fleet.yaml keys (status:, prices:, repos:
    ...); `broker_config`: more nats-server settings. Enabled workers get creds, a consumer
    and a running poller; with `repos` (a directory), each repository of fleet.yaml gets a
    mirror and git config there, made as apply makes them, and each worker with a repository
    the REPOS_FILE fleetctl renders for it."""
    enabled = tuple(w for w, extra in workers.items() if extra.get("enabled", True))
    (root / "servers.yaml").write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "servers": [
                    {"name": "broker", "address": "192.0.2.1", "roles": ["broker-host"]},
                    {"name": "node-1", "address": "192.0.2.2", "roles": ["worker-host"]},
                ],
            }
        )
    )
    body = _fleet_yaml(workers, routes or {}, ack_wait, top or {})
    (root / "fleet.yaml").write_text(yaml.safe_dump(body))
    model = load_fleet(root / "fleet.yaml", root / "servers.yaml")
    queues = queues_of(model)
    fleet = make_fleet(root, enabled, settings=model.nats, queues=queues)
    with ExitStack() as stack:
        server = stack.enter_context(fleet_server(fleet, broker_config))

        async def resources() -> None:
            async with connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
                await create_resources(fleet, admin)
                for w in model.workers:  # each with its concurrency, as apply creates them
                    if w.id in enabled and w.concurrency > 1:
                        c = natsresources.worker_consumer(model.nats, w.id, w.concurrency)
                        body = {"stream_name": c.stream, "config": c.api_config()}
                        await js_api(admin, f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}", body)
                for c in bus_state(model).route_consumers:
                    body = {"stream_name": c.stream, "config": c.api_config()}
                    await js_api(admin, f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}", body)

        asyncio.run(resources())
        tf = TaskFleet(fleet, server.url, root)
        for wid in enabled:
            work = root / "work" / wid
            work.mkdir(parents=True)
            env = poller_env(server.url, wid, work, NATS_CREDS=str(fleet.workers[wid].creds_path))
            mine = queues.get(wid, ())
            if mine:  # as fleetctl renders them into the unit
                names = fleet.names
                env["NATS_ROUTE_CONSUMERS"] = ",".join(names.route_consumer(r) for r in mine)
            labels = workers[wid].get("labels")
            if labels:  # as fleetctl renders them into the unit
                env["WORKER_LABELS"] = json.dumps(labels)
            env |= _budget_environment(model, wid)
            if repos is not None:
                env |= _repos_environment(model, wid, repos, work)
            env |= poller_extra | workers[wid].get("env", {})
            tf.pollers[wid] = Poller(env, work / "poller.log").start()
            stack.callback(tf.pollers[wid].stop)
        yield tf
