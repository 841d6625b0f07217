"""Builders for the `nats` part of operator, account and user claims (jwt/v2 field names).

Field order follows the Go structs so a decoded token reads like one nsc wrote; fields Go
tags `omitempty` are left out when zero, struct-valued ones (limits, pub/sub) are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nsc.permissions import Permissions

NO_LIMIT = -1


@dataclass(frozen=True)
class JetStreamLimits:
    """Per-account JetStream limits. Both storages 0 means JetStream is off for the account."""

    mem_storage: int = NO_LIMIT
    disk_storage: int = NO_LIMIT
    streams: int = NO_LIMIT
    consumer: int = NO_LIMIT
    max_ack_pending: int = 0
    mem_max_stream_bytes: int = 0
    disk_max_stream_bytes: int = 0
    max_bytes_required: bool = False

    @property
    def enabled(self) -> bool:
        return self.mem_storage != 0 or self.disk_storage != 0


JETSTREAM_OFF = JetStreamLimits(0, 0, 0, 0)


def operator_nats(*, signing_keys: Iterable[str], system_account: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = list(signing_keys)
    if keys:
        out["signing_keys"] = keys
    if system_account:
        out["system_account"] = system_account
    out["type"] = "operator"
    return out


def account_limits(jetstream: JetStreamLimits) -> dict[str, Any]:
    """OperatorLimits: NatsLimits, AccountLimits, JetStreamLimits inlined, zeros omitted."""
    fields: list[tuple[str, int | bool]] = [
        ("subs", NO_LIMIT),
        ("data", NO_LIMIT),
        ("payload", NO_LIMIT),
        ("imports", NO_LIMIT),
        ("exports", NO_LIMIT),
        ("wildcards", True),
        ("conn", NO_LIMIT),
        ("leaf", NO_LIMIT),
        ("mem_storage", jetstream.mem_storage),
        ("disk_storage", jetstream.disk_storage),
        ("streams", jetstream.streams),
        ("consumer", jetstream.consumer),
        ("max_ack_pending", jetstream.max_ack_pending),
        ("mem_max_stream_bytes", jetstream.mem_max_stream_bytes),
        ("disk_max_stream_bytes", jetstream.disk_max_stream_bytes),
        ("max_bytes_required", jetstream.max_bytes_required),
    ]
    return {k: v for k, v in fields if v}


def account_nats(
    *,
    signing_keys: Iterable[str],
    jetstream: JetStreamLimits = JETSTREAM_OFF,
    revocations: Mapping[str, int] | None = None,
    exports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if exports:
        out["exports"] = exports
    out["limits"] = account_limits(jetstream)
    keys = list(signing_keys)
    if keys:
        out["signing_keys"] = keys
    if revocations:
        out["revocations"] = dict(sorted(revocations.items()))
    out["default_permissions"] = {"pub": {}, "sub": {}}
    out["authorization"] = {}
    out["type"] = "account"
    return out


def user_nats(
    *,
    permissions: Permissions,
    issuer_account: str,
    tags: Iterable[str] = (),
) -> dict[str, Any]:
    """User: Permissions, then NatsLimits (unlimited), issuer_account, tags, type."""
    out: dict[str, Any] = permissions.to_jwt()
    out.update({"subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT})
    if issuer_account:
        out["issuer_account"] = issuer_account
    tag_list = [t.strip().lower() for t in tags if t.strip()]
    if tag_list:
        out["tags"] = tag_list
    out["type"] = "user"
    return out
