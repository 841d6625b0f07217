"""Everything desired state is made from besides the two YAML files, gathered in one place.

`render`, `plan --dry-run`, `plan` and `apply` all call `gather`, so they cannot disagree
about which files a host gets. Gathering only reads: a tunnel key that does not exist yet
is listed in `pending_tunnel_keys` (the plan shows it as something apply will create) and
only `apply` generates it (`tunnelkeys.ensure`) before it gathers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleetctl.config.model import Fleet

if TYPE_CHECKING:
    from fleetctl.identity.credentials import Revocation
    from fleetctl.identity.repocreds import RepoSecrets
    from fleetctl.identity.tunnelkeys import TunnelKey


@dataclass(frozen=True)
class Versions:
    """What fleetctl would install (None: unknown, so the package is not planned)."""

    poller: str | None = None
    nats_server: str | None = None


@dataclass(frozen=True)
class Inputs:
    """The credential authority's part (the broker's auth block, each worker's creds, the
    revocations a plan makes), the tunnel keys, the versions to install, and the broker's SSH
    key when it is known (pinned in servers.yaml, or as presented when fleetctl connected)."""

    auth_config: str | None = None
    creds: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # secrets
    versions: Versions = Versions()
    tunnel_keys: Mapping[str, TunnelKey] = field(default_factory=dict, repr=False)
    pending_tunnel_keys: tuple[str, ...] = ()  # worker hosts whose key apply will generate
    broker_key: str | None = None
    revocations: tuple[Revocation, ...] = ()
    revoked_at: int = 0
    missing_creds: tuple[str, ...] = ()  # enabled workers without valid creds
    warnings: tuple[str, ...] = ()
    # Each used repository's deploy key, token and copied files, read from this machine.
    repo_secrets: Mapping[str, RepoSecrets] = field(default_factory=dict, repr=False)


NO_INPUTS = Inputs()  # tests and golden files: no creds, tunnel keys or versions


def tunnel_hosts(fleet: Fleet) -> list[str]:
    """The hosts that dial the broker: worker hosts with an enabled worker, not the broker."""
    return [
        h.name
        for h in fleet.hosts
        if not h.is_broker and h.is_worker_host and fleet.workers_on(h.name)
    ]


def gather(fleet: Fleet, *, broker_key: str | None = None) -> Inputs:
    """Read the store, the tunnel keys and the local versions; write nothing."""
    from fleetctl.artifacts import brokerbinary, pollerwheel
    from fleetctl.identity import credentials, repocreds, tunnelkeys

    store = credentials.plan_inputs(fleet)
    hosts = tunnel_hosts(fleet)
    keys = tunnelkeys.load(fleet, hosts)
    nats = brokerbinary.desired_version(fleet.nats.server_binary)
    return Inputs(
        auth_config=store.auth_config,
        creds=store.creds,
        versions=Versions(pollerwheel.poller_version(), nats),
        tunnel_keys=keys,
        pending_tunnel_keys=tuple(h for h in hosts if h not in keys),
        broker_key=broker_key or fleet.broker.host_key,
        revocations=store.revocations,
        revoked_at=store.revoked_at,
        missing_creds=store.missing,
        warnings=store.warnings,
        repo_secrets=repocreds.gather(fleet),
    )
