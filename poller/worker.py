"""The JetStream loop: connect, bind the worker's consumer, pull while a slot is free, stop.

Binding never creates: the control plane owns consumers, and the worker's credentials only
allow CONSUMER.INFO, MSG.NEXT and ACK on its own durable. Pulling is poller/pull.py: long
pull requests, asked again after every reconnect, and given back cleanly on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import nats

from poller import lease, runner
from poller.cancel import Cancels
from poller.config import Config
from poller.delivery import Delivery
from poller.heartbeat import Stats, beat
from poller.inboxes import unpredictable_inboxes
from poller.jetstream import JetStreamBus, delivered
from poller.logs import Logger
from poller.pause import Pause
from poller.pull import Puller, Pullers

MAX_BACKOFF = 10.0
PING_INTERVAL = 10
MAX_PINGS = 2
# After the hand-back is asked, running tasks kill their CLI and nak at once; a task still
# not settled this much later is cancelled (and nak'd all the same).
HAND_BACK_WAIT = 15.0


async def _wait_or_stop(
    aw: Any, stop: asyncio.Event, timeout: float | None = None
) -> tuple[bool, Any]:
    """Await `aw` unless `stop` is set (or `timeout` passes) first; (finished, result)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait(
        {task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    stopper.cancel()
    if task in done:
        return True, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False, None


def _connected(nc: Any) -> str:
    """The URL of the broker a connection reached (of several, on a cluster)."""
    uri = getattr(nc, "connected_url", None)
    return uri.geturl() if uri is not None else ""


class Worker:
    def __init__(self, cfg: Config, log: Logger) -> None:
        self.cfg, self.log = cfg, log
        self.stop = asyncio.Event()  # stop fetching, let running tasks finish (drain)
        self.now = asyncio.Event()  # hand running tasks back now
        # Ends the wait for a task: set by the drain and when a pause begins.
        self.halt = asyncio.Event()
        self.stats = Stats(
            cfg.worker_id,
            cfg.backend,
            cfg.llm,
            cfg.concurrency,
            labels=cfg.labels,
            interval=cfg.heartbeat_interval,
        )
        self.pause = Pause(self.stats, log, self.halt, cfg.limit_backoff)
        self.nc: Any = None
        self.delivery: Delivery | None = None
        self.puller: Puller | Pullers | None = None
        self.cancels = Cancels(cfg, log)

    # -- connection -----------------------------------------------------------------------

    async def _error_cb(self, e: Exception) -> None:
        self.log.warning("nats_error", error=str(e))

    async def _disconnected_cb(self) -> None:
        self.log.warning("nats_disconnected")

    async def _reconnected_cb(self) -> None:
        self.log.info("nats_reconnected", url=_connected(self.nc))
        if self.puller is not None:
            await self.puller.ask_again()
        if self.delivery is not None:
            self.delivery.reconnected()

    async def _connect(self) -> bool:
        """Connect, retrying forever with backoff; False if asked to stop first."""
        pause = 0.5
        opts: dict[str, Any] = {
            "servers": self.cfg.servers,
            "name": f"fleet-poller {self.cfg.worker_id}",
            "inbox_prefix": self.cfg.inbox_prefix,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "connect_timeout": 2,
            # A connection that died without closing (a tunnel stuck while its broker's link
            # is down) is noticed within PING_INTERVAL x (MAX_PINGS + 1), then left for
            # another broker: nats.py's default would wait four minutes.
            "ping_interval": PING_INTERVAL,
            "max_outstanding_pings": MAX_PINGS,
            "error_cb": self._error_cb,
            "disconnected_cb": self._disconnected_cb,
            "reconnected_cb": self._reconnected_cb,
        }
        if self.cfg.nats_creds is not None:
            opts["user_credentials"] = str(self.cfg.nats_creds)
        while not self.stop.is_set():
            try:
                # nats.connect may itself retry for ever (max_reconnect_attempts=-1): a SIGTERM
                # must still end it.
                finished, nc = await _wait_or_stop(nats.connect(**opts), self.stop)
                if not finished:
                    return False
                self.nc = nc
                if not unpredictable_inboxes(nc):
                    self.log.warning("predictable_inboxes", nats_py="no Client._nuid")
                self.log.info("nats_connected", url=_connected(nc))
                return True
            except Exception as e:
                self.log.warning("nats_connect_failed", error=repr(e), retry_in_s=pause)
            await _wait_or_stop(asyncio.sleep(pause), self.stop)
            pause = min(pause * 2, MAX_BACKOFF)
        return False

    async def _bind(self, js: Any) -> tuple[float, int | None] | None:
        """Read ack_wait and max_deliver from the existing consumer; retry until it exists."""
        pause = 0.5
        while not self.stop.is_set():
            try:
                info = await js.consumer_info(self.cfg.task_stream, self.cfg.consumer, timeout=5)
                ack_wait = float(info.config.ack_wait or 30.0)
                max_deliver = info.config.max_deliver
                self.log.info(
                    "consumer_bound",
                    stream=self.cfg.task_stream,
                    consumer=self.cfg.consumer,
                    ack_wait_s=ack_wait,
                    max_deliver=max_deliver,
                )
                return ack_wait, max_deliver
            except Exception as e:
                self.log.error(
                    "consumer_bind_failed",
                    stream=self.cfg.task_stream,
                    consumer=self.cfg.consumer,
                    error=repr(e),
                    retry_in_s=pause,
                )
            await _wait_or_stop(asyncio.sleep(pause), self.stop)
            pause = min(pause * 2, MAX_BACKOFF)
        return None

    def _delivery(self, js: Any, ack_wait: float, max_deliver: int | None) -> Delivery:
        """The delivery flow, on this connection's JetStream."""
        ttl = lease.ttl_for(self.cfg, ack_wait)
        bus = JetStreamBus(self.cfg, js, self.log, ttl)
        return Delivery(
            self.cfg,
            bus,
            self.log,
            self.stats,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            lease_ttl=ttl,
            hand_back=self.now,
            pause=self.pause,
            draining=self.stop,
            cancels=self.cancels,
        )

    # -- stopping -------------------------------------------------------------------------

    def drain(self) -> None:
        """Stop fetching; running tasks have DRAIN_TIMEOUT seconds to finish (SIGTERM)."""
        if self.stop.is_set():
            return
        self.stats.draining = True
        self.stats.drain_until = round(time.time() + self.cfg.drain_timeout, 3)
        self.stats.touch()
        self.stop.set()
        self.halt.set()

    def hand_back_now(self) -> None:
        """Stop fetching and hand running tasks back at once (SIGUSR1, a second SIGTERM)."""
        self.drain()
        self.now.set()

    async def _on_ping(self, msg: Any) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(self.stats.snapshot()).encode())

    # -- main loop ------------------------------------------------------------------------

    async def run(self) -> None:
        killed = runner.kill_orphans(self.cfg.state_dir)
        if killed:
            self.log.warning("killed_orphans", pgids=killed)
        for name in self.cfg.ignored:
            self.log.warning("setting_ignored", variable=name, why="replaced by REPOS_FILE")
        if not await self._connect():
            self.log.info("stopped", counts=self.stats.counts)
            return
        js = self.nc.jetstream()
        beater = asyncio.create_task(beat(self.nc, self.cfg.subjects.status, self.stats))
        try:
            await self.nc.subscribe(self.cfg.subjects.ping, cb=self._on_ping)
            await self.cancels.watch(self.nc)
            bound = await self._bind(js)
            if bound is None:
                return
            self.delivery = self._delivery(js, *bound)
            await self.delivery.workspaces.sweep((), force=True)
            self.stats.state = "running"
            running = await self._loop(self.delivery)
            await self._drain(running)
        finally:
            self.stats.state = "stopped"
            beater.cancel()
            with contextlib.suppress(Exception):
                await self.nc.publish(
                    self.cfg.subjects.status, json.dumps(self.stats.snapshot()).encode()
                )
                await self.nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.log.info("stopped", counts=self.stats.counts)

    async def _loop(self, delivery: Delivery) -> set[asyncio.Task[None]]:
        """Pull one task whenever a slot is free, until stopped; returns running tasks."""
        slots = asyncio.Semaphore(self.cfg.concurrency)
        running: set[asyncio.Task[None]] = set()
        stream, own, queues = self.cfg.task_stream, self.cfg.consumer, self.cfg.route_consumers
        puller: Puller | Pullers = (
            Pullers(self.nc, stream, [own, *queues], self.log)
            if queues
            else Puller(self.nc, stream, own, self.log)
        )
        self.puller = puller
        pause = 0.25
        try:
            await puller.start()
            while not self.stop.is_set():
                if self.pause.active():
                    await self._paused(puller)
                    continue
                if self.halt.is_set():  # a pause that is over by now
                    self.halt.clear()
                got, _ = await _wait_or_stop(slots.acquire(), self.stop)
                if not got:
                    break
                if self.pause.active():  # began while we waited for the slot: ask nothing
                    slots.release()
                    continue
                try:
                    msg = await puller.next(self.halt)
                    pause = 0.25
                except Exception as e:  # PullError, or the connection's: retry
                    slots.release()
                    self.log.warning("pull_failed", error=str(e) or repr(e), retry_in_s=pause)
                    await _wait_or_stop(asyncio.sleep(pause), self.stop)
                    pause = min(pause * 2, MAX_BACKOFF)
                    continue
                if msg is None:  # stopping, or a pause began
                    slots.release()
                    continue
                try:
                    d = delivered(msg)
                    joined = delivery.join_if_running(d)
                except Exception as e:  # the puller hands on only tasks: never die of one
                    self.log.error("unexpected_message", error=repr(e), why="not a task")
                    joined = True
                if joined:
                    slots.release()
                    continue
                task = asyncio.create_task(delivery.handle(d))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _t: slots.release())
        finally:
            await puller.close()  # before waiting for running tasks: no request left waiting
        return running

    async def _paused(self, puller: Puller | Pullers) -> None:
        """Fetch nothing while the pause lasts: no request left waiting at the server (a
        route's queue goes to its other members meanwhile), then ask again."""
        await puller.close()
        if await self.pause.over(self.stop):
            if not self.stop.is_set():
                self.halt.clear()
            await puller.start() if isinstance(puller, Pullers) else puller.reopen()
        elif not self.stop.is_set():
            self.halt.clear()

    async def _drain(self, running: set[asyncio.Task[None]]) -> None:
        """Let running tasks finish until the drain's deadline (or a hand-back is asked),
        then hand back what still runs; cancel what even that does not end."""
        if not running:
            return
        self.stats.state = "stopping"
        until = self.stats.drain_until or time.time()
        self.log.info("draining", tasks=len(running), drain_timeout_s=self.cfg.drain_timeout)
        ended = asyncio.ensure_future(asyncio.wait(set(running)))
        await _wait_or_stop(ended, self.now, timeout=max(until - time.time(), 0.0))
        pending = {t for t in running if not t.done()}
        if not pending:
            return
        self.log.warning("handing_back", tasks=len(pending), asked=self.now.is_set())
        self.now.set()
        _, pending = await asyncio.wait(pending, timeout=HAND_BACK_WAIT)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
