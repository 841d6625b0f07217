"""What `fleetctl status` asks JetStream, as fleet-admin: a consumer's, a stream's and the
account's info, and a KV key's last write as it is (delete markers included). Raw API
requests, as the admin's permissions name them (fleetctl/identity/natsaccess.py
`admin_permissions`); reading tasks or results is not among them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetctl.bus.client import BusError, request
from fleetctl.bus.names import JS_API


async def _info(nc: Any, subject: str) -> dict[str, Any] | None:
    """A JetStream API answer; None when the thing does not exist."""
    answer = await request(nc, subject)
    if "error" in answer:
        if answer["error"].get("code") == 404:
            return None
        raise BusError(f"{subject}: {answer['error'].get('description')}")
    return answer


async def consumer_info(nc: Any, stream: str, durable: str) -> dict[str, Any] | None:
    """A consumer as the server sees it (its counts); None if it does not exist."""
    return await _info(nc, f"{JS_API}.CONSUMER.INFO.{stream}.{durable}")


async def stream_info(nc: Any, stream: str) -> dict[str, Any] | None:
    """A stream's state and config; None if it does not exist."""
    return await _info(nc, f"{JS_API}.STREAM.INFO.{stream}")


async def account_info(nc: Any) -> dict[str, Any] | None:
    """The account's JetStream use and limits."""
    return await _info(nc, f"{JS_API}.INFO")


@dataclass(frozen=True)
class KvWrite:
    """A KV key's last message: its data and headers (`KV-Operation` marks a delete)."""

    data: bytes
    headers: Mapping[str, str]


async def kv_last(nc: Any, stream: str, key: str, timeout: float) -> KvWrite | None:
    """The last write of one KV key (`$KV.<bucket>.<key>`), by a direct get named in the
    request subject (what a permission can restrict to some keys); None when the key was
    never written. BusError when there is no answer or the server answers with an error."""
    try:
        reply = await nc.request(f"{JS_API}.DIRECT.GET.{stream}.{key}", b"", timeout=timeout)
    except Exception as e:
        raise BusError(f"reading {key} from {stream}: {type(e).__name__}") from None
    headers = reply.headers or {}
    status = headers.get("Status")
    if status == "404":
        return None
    if status:  # an error, not a message
        description = headers.get("Description", "")
        raise BusError(f"reading {key} from {stream}: {status} {description}".strip())
    return KvWrite(reply.data, headers)
