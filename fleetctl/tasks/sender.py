"""Who sends: the sender a task record names, from the creds the client connects with, and
whether those creds may write records at all."""

from __future__ import annotations

from typing import Any

from fleetctl.bus.client import Identity
from fleetctl.bus.names import NatsNames
from fleetctl.tasks.record import Sender
from poller.permissions import allowed


def may_publish(who: Identity, subject: str) -> bool | None:
    """May these creds publish to `subject`? None when there are no creds to tell (a bus
    without auth) or they cannot be read. A publish the server refuses is only a timeout
    to the publisher, so a check that depends on one asks this first."""
    claims = _claims(who)
    if claims is None:
        return None
    return allowed((claims.get("nats") or {}).get("pub") or {}, subject)


def _claims(who: Identity) -> dict[str, Any] | None:
    """The claims of the user JWT in these creds; None without creds or when unreadable."""
    if who.creds is None:
        return None
    from nsc import jwt
    from nsc.creds import parse_creds

    try:
        token, _ = parse_creds(who.creds.read_text())
        claims = jwt.decode(token).claims
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def identity_of(who: Identity, names: NatsNames) -> tuple[Sender, str | None]:
    """The sender a record names, from the creds this client connects with, and why these
    creds cannot write records (None: they can, or there are no creds to tell). Checked
    here because a publish the server refuses is only a timeout to the publisher."""
    import getpass
    import socket

    try:
        login: str | None = f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        login = None
    claims = _claims(who)
    if claims is None:  # no creds, or unreadable ones (the connection already used them)
        return Sender(None, None, login), None
    user, key = claims.get("name"), claims.get("sub")
    sender = Sender(
        user if isinstance(user, str) else None, key if isinstance(key, str) else None, login
    )
    if not allowed((claims.get("nats") or {}).get("pub") or {}, names.record("t")):
        return sender, (
            f"the credentials of {user or who.user} predate task records and may not write "
            "them: `fleetctl apply` (or `fleetctl creds init`) issues new ones"
        )
    return sender, None
