"""The broker's streams and consumers through the JetStream API: observe and reconcile.

Raw API requests (`$JS.API.*`), not nats.py's typed wrappers, so what is compared and sent
is exactly `api_config()`: no unit conversions in between. This is the NATS edge; the
decisions are in plan.py.

nats.py and asyncio are imported where they are used: together they are a tenth of
fleetctl's start-up, and a live plan needs them only in the broker's thread, where the
import overlaps the other hosts' round trips.
"""

from __future__ import annotations

import json
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fleetctl.natsaccess import ADMIN_INBOX_PREFIX
from fleetctl.natsresources import ConsumerSpec, DeclarationError, StreamSpec, declarable

API = "$JS.API"
TIMEOUT = 5.0


class NatsApiError(Exception):
    pass


class NatsUnreachable(NatsApiError):
    """Nothing answers at the broker's NATS address (yet)."""


T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coroutine)


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.2)


@dataclass(frozen=True)
class NatsObservation:
    resources: dict[str, dict[str, object]]
    managed: frozenset[str]
    reachable: bool


def fingerprint_of(server_config: dict[str, Any], wanted: dict[str, Any]) -> dict[str, object]:
    """The server's config restricted to the keys fleetctl sets (it fills in many defaults)."""
    return {k: server_config.get(k) for k in wanted}


async def _connect(url: str, creds: Path | None) -> Any:
    opts: dict[str, Any] = {
        "servers": [url],
        "allow_reconnect": False,
        "connect_timeout": TIMEOUT,
        "max_reconnect_attempts": 0,
        "inbox_prefix": ADMIN_INBOX_PREFIX,
    }
    if creds is not None:
        opts["user_credentials"] = str(creds)

    async def quiet(_: Exception) -> None:
        return None

    opts["error_cb"] = quiet
    import nats
    from nats.errors import AuthorizationError, NoServersError
    from nats.errors import Error as NatsError

    try:
        return await nats.connect(**opts)
    except AuthorizationError:
        raise NatsApiError("the broker refused fleetctl's admin credentials") from None
    except (NoServersError, OSError, TimeoutError, NatsError) as e:
        raise NatsUnreachable(f"nothing answers at {url}: {type(e).__name__}") from None


async def _request(nc: Any, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = json.dumps(body).encode() if body is not None else b""
    try:
        msg = await nc.request(subject, payload, timeout=TIMEOUT)
    except Exception as e:
        raise NatsApiError(f"no answer to {subject}: {type(e).__name__}") from None
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def _api_error(reply: dict[str, Any]) -> str | None:
    err = reply.get("error")
    return None if not err else f"{err.get('description')} (code {err.get('err_code')})"


async def _observe(
    url: str,
    creds: Path | None,
    streams: Sequence[StreamSpec],
    consumers: Sequence[ConsumerSpec],
    consumer_stream: str,
    prefix: str,
) -> NatsObservation:
    wanted = {c.key: c.api_config() for c in consumers}
    try:
        nc = await _connect(url, creds)
    except NatsUnreachable:
        # Nothing listening yet (a bare broker): everything is still to be created.
        return NatsObservation({}, frozenset(), reachable=False)
    try:
        resources: dict[str, dict[str, object]] = {}
        managed: set[str] = set()
        for spec in streams:
            info = await _request(nc, f"{API}.STREAM.INFO.{spec.name}")
            if _api_error(info) is None:
                resources[spec.key] = fingerprint_of(info["config"], spec.api_config())
                managed.add(spec.key)
        if (
            any(s.name == consumer_stream for s in streams)
            and f"stream {consumer_stream}" in managed
        ):
            offset = 0
            while True:
                page = await _request(
                    nc, f"{API}.CONSUMER.LIST.{consumer_stream}", {"offset": offset}
                )
                if (err := _api_error(page)) is not None:
                    raise NatsApiError(f"listing consumers of {consumer_stream}: {err}")
                consumers = page.get("consumers") or []
                for info in consumers:
                    name = info["name"]
                    key = f"consumer {consumer_stream}/{name}"
                    config = info["config"]
                    resources[key] = fingerprint_of(config, wanted.get(key, config))
                    if name.startswith(prefix):
                        managed.add(key)
                offset += len(consumers)
                if not consumers or offset >= int(page.get("total", 0)):
                    break
        return NatsObservation(resources, frozenset(managed), reachable=True)
    finally:
        await nc.close()


def observe(
    url: str,
    creds: Path | None,
    streams: Sequence[StreamSpec],
    consumers: Sequence[ConsumerSpec],
    consumer_stream: str,
    prefix: str,
) -> NatsObservation:
    """Streams by name, and every consumer on the task stream; `managed` holds the consumers
    fleetctl would have made (durable name with the worker prefix)."""
    return _run(_observe(url, creds, streams, consumers, consumer_stream, prefix))


@dataclass(frozen=True)
class NatsChange:
    action: str  # create, update, delete
    resource: StreamSpec | ConsumerSpec | None
    key: str


async def _apply(url: str, creds: Path | None, changes: Iterable[NatsChange]) -> None:
    nc = await _connect(url, creds)
    try:
        for change in changes:
            subject, body = _request_for(change)
            reply = await _request(nc, subject, body)
            if (err := _api_error(reply)) is not None:
                raise NatsApiError(f"{change.action} {change.key}: {err}")
    finally:
        await nc.close()


def _request_for(change: NatsChange) -> tuple[str, dict[str, Any] | None]:
    kind, _, name = change.key.partition(" ")
    spec = change.resource
    if change.action == "delete":
        if kind == "stream":
            return f"{API}.STREAM.DELETE.{name}", None
        stream, _, durable = name.partition("/")
        return f"{API}.CONSUMER.DELETE.{stream}.{durable}", None
    if isinstance(spec, StreamSpec):
        verb = "CREATE" if change.action == "create" else "UPDATE"
        return f"{API}.STREAM.{verb}.{spec.name}", _declared("stream", spec.api_config())
    if isinstance(spec, ConsumerSpec):
        body = {"stream_name": spec.stream, "config": _declared("consumer", spec.api_config())}
        if change.action == "update":
            body["action"] = "update"
        return f"{API}.CONSUMER.CREATE.{spec.stream}.{spec.durable}", body
    raise NatsApiError(f"cannot {change.action} {change.key}")


def _declared(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return declarable(kind, config)
    except DeclarationError as e:
        raise NatsApiError(str(e)) from None


def apply(url: str, creds: Path | None, changes: Sequence[NatsChange]) -> None:
    """Streams before consumers; deletions last."""
    order = {"stream": 0, "consumer": 1}
    ordered = sorted(
        changes, key=lambda c: (c.action == "delete", order.get(c.key.split(" ")[0], 2))
    )
    _run(_apply(url, creds, ordered))


async def _wait_ready(url: str, creds: Path | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            nc = await _connect(url, creds)
        except NatsApiError:
            await _pause()
            continue
        try:
            reply = await _request(nc, f"{API}.INFO")
            if _api_error(reply) is None:
                return True
        except NatsApiError:
            pass
        finally:
            await nc.close()
        await _pause()
    return False


def wait_ready(url: str, creds: Path | None, seconds: float = 15.0) -> bool:
    """After nats-server (re)starts: is JetStream answering yet?"""
    return _run(_wait_ready(url, creds, seconds))
