"""A cluster's brokers as fleet-sys sees them: each answers `$SYS.REQ.SERVER.PING.<what>`
for itself (version, routes, JetStream and its meta group, health), so one connection to any
broker reads them all, and a broker that does not answer is down or cut off. Counts and
names only: nothing here reads a message.

`look` is the NATS edge; `read` is pure (what the replies say)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.bus.client import BusError

PING = "$SYS.REQ.SERVER.PING"
WAIT = 1.0  # seconds for every broker to answer; a healthy one answers in milliseconds


@dataclass(frozen=True)
class BrokerView:
    """One broker that answered."""

    name: str
    version: str = ""
    routes: tuple[str, ...] = ()  # the brokers it has routes to, by name
    jetstream: bool = False
    meta_leader: str = ""  # the JetStream meta leader as it knows it ("": none)
    meta_peers: tuple[str, ...] = ()  # the meta group's members as it knows them
    healthy: bool = False  # HEALTHZ: JetStream up and current
    health: str = ""  # why not, as nats-server says

    @property
    def clustered(self) -> bool:
        return bool(self.meta_peers)


@dataclass(frozen=True)
class ClusterView:
    """The brokers that answered, by name."""

    brokers: Mapping[str, BrokerView] = field(default_factory=dict)

    @property
    def meta_leader(self) -> str | None:
        """The meta leader most answering brokers name (None: none does)."""
        named = Counter(b.meta_leader for b in self.brokers.values() if b.meta_leader)
        return named.most_common(1)[0][0] if named else None

    @property
    def members(self) -> tuple[str, ...]:
        """The JetStream meta group's members, as its leader (else any broker) says; a
        standalone server is the only member of its own."""
        leader = self.brokers.get(self.meta_leader or "")
        for b in [leader, *self.brokers.values()]:
            if b is not None and b.meta_peers:
                return b.meta_peers
        return tuple(sorted(self.brokers))


def _data(reply: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    server = reply.get("server") or {}
    data = reply.get("data")
    return str(server.get("name", "")), data if isinstance(data, dict) else {}


def read(
    varz: Iterable[Mapping[str, Any]],
    routez: Iterable[Mapping[str, Any]],
    jsz: Iterable[Mapping[str, Any]],
    healthz: Iterable[Mapping[str, Any]],
) -> ClusterView:
    """The replies of each kind, one per broker that answered, as a view."""
    found: dict[str, dict[str, Any]] = {}

    def of(name: str) -> dict[str, Any]:
        return found.setdefault(name, {"name": name})

    for reply in varz:
        name, data = _data(reply)
        if name:
            of(name)["version"] = str(data.get("version", ""))
    for reply in routez:
        name, data = _data(reply)
        if name:
            peers = {str(r.get("remote_name", "")) for r in data.get("routes") or []}
            of(name)["routes"] = tuple(sorted(p for p in peers if p))
    for reply in jsz:
        name, data = _data(reply)
        if not name:
            continue
        meta = data.get("meta_cluster") or {}
        leader = str(meta.get("leader", ""))
        peers = {str(r.get("name", "")) for r in meta.get("replicas") or []}
        peers |= {name} if meta else set()
        peers |= {leader} if leader else set()
        entry = of(name)
        entry["jetstream"] = not data.get("disabled", False) and "config" in data
        entry["meta_leader"] = leader
        entry["meta_peers"] = tuple(sorted(p for p in peers if p))
    for reply in healthz:
        name, data = _data(reply)
        if name:
            ok = data.get("status") == "ok"
            of(name)["healthy"] = ok
            of(name)["health"] = "" if ok else str(data.get("error") or data.get("status"))
    return ClusterView({n: BrokerView(**v) for n, v in sorted(found.items())})


async def _ping(
    nc: Any, prefix: str, what: str, expect: int, wait: float, body: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every broker's answer to one ping: until `expect` answered, or `wait` is over."""
    inbox = f"{prefix}.{secrets.token_hex(8)}"
    replies: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def on_reply(msg: Any) -> None:
        try:
            replies.append(json.loads(msg.data))
        except ValueError:
            return
        if len(replies) >= expect:
            done.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(f"{PING}.{what}", json.dumps(body or {}).encode(), reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), wait)
    except Exception as e:  # the connection is gone
        raise BusError(f"asking the brokers for {what}: {type(e).__name__}") from None
    finally:
        await sub.unsubscribe()
    return replies


async def look(nc: Any, prefix: str, expect: int, wait: float = WAIT) -> ClusterView:
    """Every broker that answers within `wait` (`expect`: how many there are, so a healthy
    cluster is read without waiting it out). `nc` is fleet-sys's connection; `prefix` its
    inbox prefix."""
    answers = await asyncio.gather(
        *(_ping(nc, prefix, what, expect, wait) for what in ("VARZ", "ROUTEZ", "JSZ", "HEALTHZ"))
    )
    return read(*answers)


async def health(nc: Any, prefix: str, broker: str, wait: float = WAIT) -> BrokerView | None:
    """One broker's health (HEALTHZ, filtered by its name) and meta group (JSZ); None when
    it does not answer."""
    body = {"server_name": broker}
    jsz, healthz = await asyncio.gather(
        _ping(nc, prefix, "JSZ", 1, wait, body), _ping(nc, prefix, "HEALTHZ", 1, wait, body)
    )
    return read((), (), jsz, healthz).brokers.get(broker)


async def wait_healthy(
    nc: Any, prefix: str, broker: str, seconds: float, every: float = 0.5
) -> BrokerView | None:
    """Ask until `broker` says it is healthy (JetStream up, its streams and consumers current)
    or `seconds` run out: its last view (None: it never answered)."""
    deadline = time.monotonic() + seconds
    last = None
    while True:
        with contextlib.suppress(BusError):
            last = await health(nc, prefix, broker) or last
        if (last is not None and last.healthy) or time.monotonic() >= deadline:
            return last
        await asyncio.sleep(every)
