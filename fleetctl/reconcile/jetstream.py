"""The bus's streams and consumers through the JetStream API: observe them, apply changes.

Raw API requests (`$JS.API.*`), not nats.py's typed wrappers, so what is compared and sent
is exactly `api_config()`: no unit conversions in between. Each kind says which request
observes or makes it and how a reply reads (fleetctl/bus/resources.py); this module sends
them. This is the NATS edge; the decisions are in plan/.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fleetctl.bus import clusterview
from fleetctl.bus.client import BusError, BusUnreachable, Endpoint, connect, pause, request, run
from fleetctl.bus.clusterview import ClusterView
from fleetctl.bus.names import JS_API
from fleetctl.bus.resources import (
    ConsumerSpec,
    DeclarationError,
    Request,
    StreamSpec,
    declarable,
    near_limit_warning,
)
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.plan.types import Change
from fleetctl.reconcile.resources.kinds import JETSTREAM_KINDS


def _api_error(reply: dict[str, Any]) -> str | None:
    err = reply.get("error")
    return None if not err else f"{err.get('description')} (code {err.get('err_code')})"


async def _observe(endpoint: Endpoint, bus: BusState) -> ObservedBus:
    wanted = {c.key: c for c, _ in bus.consumers}
    wanted |= {c.key: c for c in bus.route_consumers}
    try:
        nc = await connect(endpoint)
    except BusUnreachable as e:
        # A bare broker (nothing to keep), or a server that is down (then unknown): the plan
        # tells them apart by whether nats-server is installed.
        return ObservedBus(reachable=False, error=str(e))
    try:
        resources: dict[str, dict[str, object]] = {}
        managed: set[str] = set()
        warnings: list[str] = []
        queued: dict[str, int] = {}
        running: dict[str, int] = {}
        for spec in bus.streams:
            info = await request(nc, *spec.info_request())
            if _api_error(info) is None:
                resources[spec.key] = spec.read(info)
                managed.add(spec.key)
                if (warning := near_limit_warning(info)) is not None:
                    warnings.append(warning)
        stream = bus.consumer_stream
        if f"stream {stream}" in managed:
            for info in await _consumers(nc, stream):
                key = ConsumerSpec.key_of(stream, info["name"])
                resources[key] = ConsumerSpec.read(info["config"], wanted.get(key))
                if ConsumerSpec.owned(info["name"]):
                    managed.add(key)
                queued[key] = int(info.get("num_pending") or 0)
                running[key] = int(info.get("num_ack_pending") or 0)
        return ObservedBus(
            resources, frozenset(managed), warnings=tuple(warnings), queued=queued, running=running
        )
    finally:
        await nc.close()


async def _consumers(nc: Any, stream: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = await request(nc, *ConsumerSpec.list_request(stream, len(found)))
        if (err := _api_error(page)) is not None:
            raise BusError(f"listing consumers of {stream}: {err}")
        batch = page.get("consumers") or []
        found += batch
        if not batch or len(found) >= int(page.get("total", 0)):
            return found


def observe_cluster(endpoint: Endpoint, brokers: int) -> ClusterView:
    """Each broker of a cluster that answers, as fleet-sys (`endpoint`'s identity)."""

    async def look() -> ClusterView:
        nc = await connect(endpoint)
        try:
            return await clusterview.look(nc, endpoint.identity.inbox_prefix, brokers)
        finally:
            await nc.close()

    return run(look())


def observe(endpoint: Endpoint, bus: BusState) -> ObservedBus:
    """Streams by name, and every consumer on the task stream; `managed` holds the consumers
    fleetctl would have made (durable name with the worker prefix)."""
    return run(_observe(endpoint, bus))


async def _apply(endpoint: Endpoint, changes: Sequence[Change], settle: float) -> None:
    nc = await connect(endpoint)
    try:
        for change in changes:
            subject, body = request_for(change)
            reply = await _request(nc, subject, body, change)
            if _pushes(reply, change):  # made by someone else: replaced, never kept
                gone = await request(nc, request_for(replace(change, action="delete"))[0])
                if _api_error(gone) is None:
                    reply = await request(nc, *request_for(replace(change, action="create")))
            if (err := _api_error(reply)) is not None:
                raise BusError(f"{change.action} {change.kind} {change.name}: {err}")
        await _settle(nc, [c.resource for c in changes if _replicated(c)], settle)
    finally:
        await nc.close()


# A cluster answers some requests with these while its leaders change (a broker restarting,
# a stream just made): asked again until RETRY_FOR runs out.
NOT_AVAILABLE, NOT_LEADER, STREAM_NOT_FOUND = 10008, 10009, 10059
RETRY_FOR = 30.0


async def _request(
    nc: Any, subject: str, body: dict[str, Any] | None, change: Change
) -> dict[str, Any]:
    """The request, asked again while the cluster is between leaders: no answer, "temporarily
    unavailable", "can not handle request", or (for what follows a stream's creation: its
    update or its consumers) "stream not found" while the new stream's group forms."""
    deadline = time.monotonic() + RETRY_FOR
    while True:
        try:
            reply = await request(nc, subject, body)
        except BusError:
            if time.monotonic() >= deadline:
                raise
            continue
        code = (reply.get("error") or {}).get("err_code")
        transient = code in (NOT_AVAILABLE, NOT_LEADER) or (
            code == STREAM_NOT_FOUND and (change.kind != "stream" or change.action == "update")
        )
        if not transient or time.monotonic() >= deadline:
            return reply
        await pause(0.25)


def _replicated(change: Change) -> bool:
    spec = change.resource
    return isinstance(spec, StreamSpec) and change.action != "delete" and spec.replicas > 1


async def _settle(nc: Any, streams: Sequence[Any], seconds: float) -> None:
    """Wait until each replicated stream made or changed has every copy current (a change of
    replicas copies the stream to its new brokers, and its consumers after it): apply does
    not go on with copies still catching up. BusError when one has not within `seconds`."""
    deadline = time.monotonic() + seconds
    for spec in streams:
        while True:
            info = await request(nc, *spec.info_request())
            lagging = replicas_behind(info, spec.replicas)
            if lagging is None:
                break
            if time.monotonic() >= deadline:
                raise BusError(
                    f"stream {spec.name}: its {spec.replicas} copies are not current "
                    f"after {seconds:.0f} s ({lagging})"
                )
            await pause(0.5)


def replicas_behind(info: dict[str, Any], replicas: int) -> str | None:
    """What keeps a stream from having `replicas` current copies (STREAM.INFO's `cluster`),
    or None when it has them."""
    if (err := _api_error(info)) is not None:
        return err
    cluster = info.get("cluster") or {}
    if not cluster.get("leader"):
        return "no leader"
    peers = cluster.get("replicas") or []
    if len(peers) < replicas - 1:
        return f"{len(peers) + 1} of {replicas} copies"
    behind = [p.get("name", "?") for p in peers if not p.get("current")]
    if behind:
        return f"not current on {', '.join(behind)}"
    if cluster.get("desired"):  # nats-server still moving it to its new peers
        status = (cluster["desired"].get("status") or {}).get("description") or "moving"
        return str(status)
    return None


# "can not update push consumer to pull based": fleetctl never makes a push consumer.
PUSH_TO_PULL = 10012


def _pushes(reply: dict[str, Any], change: Change) -> bool:
    """A consumer of a worker's name that pushes (docs/security.md, "fleet-admin"): no
    update makes it pull again, so apply deletes it and creates the declared one."""
    err = reply.get("error") or {}
    return change.kind == "consumer" and err.get("err_code") == PUSH_TO_PULL


def request_for(change: Change) -> Request:
    """The JetStream API request (subject, body) that makes one change."""
    kind = JETSTREAM_KINDS.get(change.kind)
    if kind is not None and change.action == "delete":
        return kind.delete_request(change.name)
    spec = change.resource
    if kind is not None and isinstance(spec, kind):
        return spec.write_request(change.action, _declared(spec.kind, spec.api_config()))
    raise BusError(f"cannot {change.action} {change.kind} {change.name}")


def _declared(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Every declaration sent passes here: one fleetctl refuses is a bus error."""
    try:
        return declarable(kind, config)
    except DeclarationError as e:
        raise BusError(str(e)) from None


def ordered(changes: Sequence[Change]) -> list[Change]:
    """The JetStream changes among `changes`, in an order the server accepts (each kind's
    `apply_rank`): departed consumers first (the task stream then stops taking their inbox),
    streams before the consumers they hold, deleted streams last."""
    api = [c for c in changes if c.kind in JETSTREAM_KINDS]
    return sorted(api, key=lambda c: JETSTREAM_KINDS[c.kind].apply_rank(c.action))


# How long apply waits for a replicated stream's copies to be current (a stream of a few
# GiB copied to two new brokers takes minutes).
SETTLE = 300.0


def apply(endpoint: Endpoint, changes: Sequence[Change], settle: float = SETTLE) -> None:
    run(_apply(endpoint, ordered(changes), settle))


async def _wait_ready(endpoint: Endpoint, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            nc = await connect(endpoint)
        except BusError:
            await pause()
            continue
        try:
            reply = await request(nc, f"{JS_API}.INFO")
            if _api_error(reply) is None:
                return True
        except BusError:
            pass
        finally:
            await nc.close()
        await pause()
    return False


def wait_ready(endpoint: Endpoint, seconds: float = 15.0) -> bool:
    """After nats-server (re)starts: is JetStream answering yet?"""
    return run(_wait_ready(endpoint, seconds))
