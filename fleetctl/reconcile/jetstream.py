"""The bus's streams and consumers through the JetStream API: observe them, apply changes.

Raw API requests (`$JS.API.*`), not nats.py's typed wrappers, so what is compared and sent
is exactly `api_config()`: no unit conversions in between. This is the NATS edge; the
decisions are in plan/.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fleetctl.bus.client import BusError, BusUnreachable, Endpoint, connect, pause, request, run
from fleetctl.bus.names import JS_API, NatsNames
from fleetctl.bus.resources import (
    COPYING_STREAM_KEYS,
    PUSH_CONSUMER_KEYS,
    ConsumerSpec,
    DeclarationError,
    StreamSpec,
    declarable,
    near_limit_warning,
)
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.plan.types import Change

KINDS = ("stream", "consumer")
# Consumers fleetctl makes on the task stream (and removes when nothing needs them).
OWNED_CONSUMERS = (
    NatsNames.consumer(""),
    NatsNames.route_consumer(""),
)  # the bus changes made through this API; credentials are not


# Settings fleetctl never declares but whoever holds the admin's creds can set with an update
# (permissions cannot see a request's body): copies of a stream's messages elsewhere
# (republish to the admin's inbox, a source transformed into a worker's inbox), subjects
# rewritten, headers that purge or rewrite messages; a push consumer's deliver subject.
UNDECLARED = {
    "stream": (
        *COPYING_STREAM_KEYS,
        "subject_transform",
        "allow_rollup_hdrs",
        "allow_msg_ttl",
        "allow_msg_counter",
        "allow_atomic",
        "allow_msg_schedules",
    ),
    "consumer": PUSH_CONSUMER_KEYS,
}


def fingerprint_of(
    server_config: dict[str, Any], wanted: dict[str, Any], kind: str = "stream"
) -> dict[str, object]:
    """The server's config restricted to the keys fleetctl sets (it fills in many defaults),
    and any setting fleetctl never declares that is on: the plan shows that as an update,
    and apply, sending only the declared config, turns it off (docs/security.md)."""
    found = {k: server_config.get(k) for k in wanted}
    found |= {
        k: server_config[k] for k in UNDECLARED[kind] if server_config.get(k) and k not in wanted
    }
    return found


def _api_error(reply: dict[str, Any]) -> str | None:
    err = reply.get("error")
    return None if not err else f"{err.get('description')} (code {err.get('err_code')})"


async def _observe(endpoint: Endpoint, bus: BusState) -> ObservedBus:
    wanted = {c.key: c.api_config() for c, _ in bus.consumers}
    wanted |= {c.key: c.api_config() for c in bus.route_consumers}
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
        for spec in bus.streams:
            info = await request(nc, f"{JS_API}.STREAM.INFO.{spec.name}")
            if _api_error(info) is None:
                resources[spec.key] = fingerprint_of(info["config"], spec.api_config())
                managed.add(spec.key)
                if (warning := near_limit_warning(info)) is not None:
                    warnings.append(warning)
        stream = bus.consumer_stream
        if f"stream {stream}" in managed:
            for info in await _consumers(nc, stream):
                key = f"consumer {stream}/{info['name']}"
                config = info["config"]
                resources[key] = fingerprint_of(config, wanted.get(key, config), "consumer")
                if info["name"].startswith(OWNED_CONSUMERS):
                    managed.add(key)
                queued[key] = int(info.get("num_pending") or 0)
        return ObservedBus(resources, frozenset(managed), warnings=tuple(warnings), queued=queued)
    finally:
        await nc.close()


async def _consumers(nc: Any, stream: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = await request(nc, f"{JS_API}.CONSUMER.LIST.{stream}", {"offset": len(found)})
        if (err := _api_error(page)) is not None:
            raise BusError(f"listing consumers of {stream}: {err}")
        batch = page.get("consumers") or []
        found += batch
        if not batch or len(found) >= int(page.get("total", 0)):
            return found


def observe(endpoint: Endpoint, bus: BusState) -> ObservedBus:
    """Streams by name, and every consumer on the task stream; `managed` holds the consumers
    fleetctl would have made (durable name with the worker prefix)."""
    return run(_observe(endpoint, bus))


async def _apply(endpoint: Endpoint, changes: Sequence[Change]) -> None:
    nc = await connect(endpoint)
    try:
        for change in changes:
            subject, body = request_for(change)
            reply = await request(nc, subject, body)
            if _pushes(reply, change):  # made by someone else: replaced, never kept
                gone = await request(nc, request_for(replace(change, action="delete"))[0])
                if _api_error(gone) is None:
                    reply = await request(nc, *request_for(replace(change, action="create")))
            if (err := _api_error(reply)) is not None:
                raise BusError(f"{change.action} {change.kind} {change.name}: {err}")
    finally:
        await nc.close()


# "can not update push consumer to pull based": fleetctl never makes a push consumer.
PUSH_TO_PULL = 10012


def _pushes(reply: dict[str, Any], change: Change) -> bool:
    """A consumer of a worker's name that pushes (docs/security.md, "fleet-admin"): no
    update makes it pull again, so apply deletes it and creates the declared one."""
    err = reply.get("error") or {}
    return change.kind == "consumer" and err.get("err_code") == PUSH_TO_PULL


def request_for(change: Change) -> tuple[str, dict[str, Any] | None]:
    """The JetStream API request (subject, body) that makes one change."""
    spec = change.resource
    if change.action == "delete":
        if change.kind == "stream":
            return f"{JS_API}.STREAM.DELETE.{change.name}", None
        stream, _, durable = change.name.partition("/")
        return f"{JS_API}.CONSUMER.DELETE.{stream}.{durable}", None
    if isinstance(spec, StreamSpec):
        verb = "CREATE" if change.action == "create" else "UPDATE"
        return f"{JS_API}.STREAM.{verb}.{spec.name}", _declared("stream", spec.api_config())
    if isinstance(spec, ConsumerSpec):
        body = {"stream_name": spec.stream, "config": _declared("consumer", spec.api_config())}
        if change.action == "update":
            body["action"] = "update"
        return f"{JS_API}.CONSUMER.CREATE.{spec.stream}.{spec.durable}", body
    raise BusError(f"cannot {change.action} {change.kind} {change.name}")


def _declared(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return declarable(kind, config)
    except DeclarationError as e:
        raise BusError(str(e)) from None


def ordered(changes: Sequence[Change]) -> list[Change]:
    """The JetStream changes among `changes`, in an order the server accepts: departed
    consumers first (the task stream then stops taking their inbox), streams before the
    consumers they hold, deleted streams last."""

    def rank(c: Change) -> int:
        if c.kind == "consumer" and c.action == "delete":
            return 0
        if c.kind == "stream":
            return 3 if c.action == "delete" else 1
        return 2

    return sorted((c for c in changes if c.kind in KINDS), key=rank)


def apply(endpoint: Endpoint, changes: Sequence[Change]) -> None:
    run(_apply(endpoint, ordered(changes)))


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
