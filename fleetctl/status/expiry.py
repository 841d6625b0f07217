"""When each worker's credentials expire, for `fleetctl status` (read from the fleet's
credential store, when it has one)."""

from __future__ import annotations

from fleetctl.config.model import Fleet


def creds_expiry(fleet: Fleet) -> dict[str, int | None]:
    """Each worker's credentials' expiry (Unix seconds) from the fleet's store, if it has one."""
    from fleetctl.identity import credentials, natsaccess

    authority = credentials.load(fleet)
    if authority is None:
        return {}
    return {
        r.worker: r.expires_at
        for r in natsaccess.credential_rows(authority)
        if r.worker is not None and not r.revoked
    }
