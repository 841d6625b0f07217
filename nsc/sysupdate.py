"""Pushing a re-signed account JWT to a running server (memory resolver) via the system account.

The memory resolver accepts `$SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE` from a system-account
user and applies it at once (revocations take effect, connected revoked users are dropped), but
does not persist it: the caller must also rewrite the config (`Authority.server_config()`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsc import jwt
from nsc.errors import NscError

SYS_INBOX_PREFIX = "_INBOX_SYS"


class ClaimsUpdateError(NscError, RuntimeError):
    """The server refused the account JWT, or did not answer."""


@dataclass(frozen=True)
class ClaimsUpdate:
    subject: str
    payload: bytes


def claims_update(account_jwt: str) -> ClaimsUpdate:
    """The subject and payload that push this account JWT live."""
    d = jwt.decode(account_jwt)
    if d.claim_type != "account":
        raise ClaimsUpdateError("only an account JWT can be pushed as a claims update")
    return ClaimsUpdate(f"$SYS.REQ.ACCOUNT.{d.claims['sub']}.CLAIMS.UPDATE", account_jwt.encode())


async def push_account_jwt(
    servers: str | list[str],
    sys_creds: Path,
    account_jwt: str,
    *,
    timeout: float = 2.0,
    inbox_prefix: str = SYS_INBOX_PREFIX,
) -> dict[str, Any]:
    """Send the update as a SYS user; returns the server's `data`, raises on its `error`."""
    import nats  # local: keeps `nsc` importable without a running event loop or nats-py

    update = claims_update(account_jwt)
    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e))

    nc = await nats.connect(
        servers,
        user_credentials=str(sys_creds),
        inbox_prefix=inbox_prefix,
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=timeout,
    )
    try:
        msg = await nc.request(update.subject, update.payload, timeout=timeout)
    except Exception as e:
        raise ClaimsUpdateError(f"no answer to {update.subject}: {e!r} {errors}") from None
    finally:
        await nc.close()
    reply = json.loads(msg.data)
    if "error" in reply:
        raise ClaimsUpdateError(f"server refused the account JWT: {reply['error']}")
    data: dict[str, Any] = reply.get("data", {})
    return data
