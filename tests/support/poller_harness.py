"""Drive a real `python -m poller` against a real nats-server, with stand-in CLIs.

Streams and the worker's consumer are created from fleetctl's own specs (natsresources), the
way the control plane would; the poller only binds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.js.errors
from nats.js.api import ConsumerConfig, StreamConfig

from fleetctl.bus import resources as natsresources
from fleetctl.config.schema import NatsSettings
from poller import config
from poller.lease import Leases
from tests.support.natsserver import NatsServer

STANDIN = Path(__file__).parent / "standin_cli"
# A pid namespace of its own: to a poller in it, this machine's pids mean nothing, as on
# another host (the poller dies with the wrapper).
ANOTHER_MACHINE = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def setup_bus(
    url: str, worker_id: str, *, ack_wait: int = 2, max_deliver: int = 3, concurrency: int = 1
) -> None:
    settings = NatsSettings(ack_wait=ack_wait, max_deliver=max_deliver, duplicate_window=60)
    nc = await nats.connect(url)
    js = nc.jetstream()
    for spec in natsresources.streams(settings):
        await js.add_stream(StreamConfig.from_response(spec.api_config()))
    c = natsresources.worker_consumer(settings, worker_id, concurrency)
    await js.add_consumer(c.stream, ConsumerConfig.from_response(c.api_config()))
    await nc.close()


def poller_env(url: str, worker_id: str, work: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "SYSTEMROOT")
    }
    env.update(
        WORKER_ID=worker_id,
        NATS_URL=url,
        NATS_SUBJECT_PREFIX="af",
        NATS_TASK_STREAM="AF_TASKS",
        NATS_CONSUMER=f"worker-{worker_id}",
        NATS_RESULTS_STREAM="AF_RESULTS",
        NATS_DEAD_STREAM="AF_DEAD",
        NATS_INBOX_PREFIX=f"_INBOX_{worker_id}",
        MODEL_BACKEND="command",
        LLM="test",
        COMMAND_ARGV=json.dumps([str(STANDIN / "fake-command")]),
        CLAUDE_BIN=str(STANDIN / "fake-claude"),
        CODEX_BIN=str(STANDIN / "fake-codex"),
        GEMINI_BIN=str(STANDIN / "fake-gemini"),
        TASK_TIMEOUT="60",
        WORK_BASE=str(work),
        HOME=str(work),
        STANDIN_LOG=str(work / "standin.jsonl"),
        HEARTBEAT_INTERVAL="0.5",
        NAK_DELAY="0.5",
        KILL_GRACE="1",
        DRAIN_TIMEOUT="5",
    )
    env.update(extra)
    return env


@dataclass
class Poller:
    """`python -m poller` as a real subprocess; its JSON log lines go to a file."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)
    # Runs the poller under this command (e.g. `ANOTHER_MACHINE`).
    wrapper: tuple[str, ...] = ()

    def start(self) -> Poller:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "poller"],
            env=self.env,
            stderr=log,
            stdout=log,
            cwd=REPO,
        )
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"event": "not-json", "line": line})
        return out

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]


async def wait_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float, step: float = 0.05
) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)


async def publish_task(
    js: Any, worker_id: str, task: dict[str, Any] | bytes, msg_id: str | None = None
) -> Any:
    data = task if isinstance(task, bytes) else json.dumps(task).encode()
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    return await js.publish(f"af.worker.{worker_id}.inbox", data, headers=headers)


async def stream_messages(js: Any, stream: str) -> list[tuple[str, dict[str, Any], Any]]:
    """(subject, decoded JSON, headers) of every message stored in `stream`."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
        try:
            m = await js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            continue
        out.append((m.subject, json.loads(m.data), m.headers))
    return out


def standin_records(work: Path, phase: str | None = None) -> list[dict[str, Any]]:
    path = work / "standin.jsonl"
    if not path.exists():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if phase is None or r["phase"] == phase]


async def started(work: Path, n: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
    """The stand-in's start records once `n` runs have started (asserted within `timeout`)."""
    assert await wait_until(lambda: len(standin_records(work, "start")) >= n, timeout)
    return standin_records(work, "start")


def worker_leases(worker_id: str, js: Any, state: Path) -> Leases:
    """A worker's task leases as its poller keeps them (state dir `state`), on `js`: its
    own connection, so the server's permissions apply."""
    cfg = config.load(poller_env("nats://127.0.0.1:1", worker_id, state))
    return Leases(cfg, js, ttl=30, holder=f"poller-of-{worker_id}")


def directive(**ask: Any) -> str:
    """The first prompt line a stand-in CLI obeys."""
    return "standin: " + json.dumps(ask)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


__all__ = [
    "NatsServer",
    "Poller",
    "alive",
    "directive",
    "poller_env",
    "publish_task",
    "run",
    "setup_bus",
    "standin_records",
    "stream_messages",
    "wait_until",
]


@dataclass
class Bus:
    """A running poller for worker w1 and a plain (admin) connection to its broker."""

    nc: Any
    js: Any
    poller: Poller


@asynccontextmanager
async def running_poller(
    url: str,
    work: Path,
    *,
    ack_wait: int = 2,
    max_deliver: int = 3,
    concurrency: int = 1,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Bus]:
    """Streams and w1's consumer, a poller started on them, and a connection to watch it."""
    await setup_bus(url, "w1", ack_wait=ack_wait, max_deliver=max_deliver, concurrency=concurrency)
    poller = Poller(poller_env(url, "w1", work, **(env or {})), work / "poller.log").start()
    nc = await nats.connect(url)
    try:
        yield Bus(nc, nc.jetstream(), poller)
    finally:
        await nc.close()
        poller.stop()


async def results(js: Any) -> list[dict[str, Any]]:
    """The stored results, in order."""
    return [r for _, r, _ in await stream_messages(js, "AF_RESULTS")]
