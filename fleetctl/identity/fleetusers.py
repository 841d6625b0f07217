"""fleetctl's own users on the bus (fleet-admin, fleet-publisher): their creds and inboxes.

Kept here, not in the bus client, so the bus package knows connections and requests and
nothing of where credentials are stored.
"""

from __future__ import annotations

from fleetctl.bus.client import Identity
from fleetctl.config.model import Fleet
from fleetctl.identity import credentials
from fleetctl.identity.natsaccess import (
    ADMIN_INBOX_PREFIX,
    ADMIN_USER,
    DASHBOARD_INBOX_PREFIX,
    DASHBOARD_USER,
    PUBLISHER_INBOX_PREFIX,
    PUBLISHER_USER,
    SYSTEM_INBOX_PREFIX,
    SYSTEM_USER,
)

INBOX_PREFIXES = {
    ADMIN_USER: ADMIN_INBOX_PREFIX,
    PUBLISHER_USER: PUBLISHER_INBOX_PREFIX,
    SYSTEM_USER: SYSTEM_INBOX_PREFIX,
    DASHBOARD_USER: DASHBOARD_INBOX_PREFIX,
}


def identity(fleet: Fleet, user: str = ADMIN_USER) -> Identity:
    """A fleet user with its creds from the fleet's store (None while there is no operator)."""
    if user == SYSTEM_USER:
        return system_identity(fleet)
    authority = credentials.load(fleet)
    path = authority.creds_path(user) if authority is not None else None
    return Identity(
        user, path if path is not None and path.exists() else None, INBOX_PREFIXES[user]
    )


def system_identity(fleet: Fleet) -> Identity:
    """fleet-sys (account SYS): each broker's state and health, a departed broker's removal."""
    authority = credentials.load(fleet)
    path = authority.creds_path(SYSTEM_USER, authority.system_account) if authority else None
    return Identity(
        SYSTEM_USER, path if path is not None and path.exists() else None, SYSTEM_INBOX_PREFIX
    )
