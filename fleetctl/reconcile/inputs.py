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
from fleetctl.config.tunnels import tunnel_hosts

if TYPE_CHECKING:
    from fleetctl.identity.credentials import Revocation
    from fleetctl.identity.repocreds import RepoSecrets
    from fleetctl.identity.routetls import RouteTls
    from fleetctl.identity.tunnelkeys import TunnelKey


@dataclass(frozen=True)
class Versions:
    """What fleetctl would install (None: unknown, so the package is not planned)."""

    poller: str | None = None
    nats_server: str | None = None


@dataclass(frozen=True)
class Inputs:
    """The credential authority's part (the broker's auth block, each worker's creds, the
    revocations a plan makes), the tunnel keys, a cluster's route TLS, the versions to
    install, and each broker's SSH key when it is known (pinned in servers.yaml, or as
    presented when fleetctl connected), by broker name."""

    auth_config: str | None = None
    creds: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # secrets
    versions: Versions = Versions()
    tunnel_keys: Mapping[str, TunnelKey] = field(default_factory=dict, repr=False)
    pending_tunnel_keys: tuple[str, ...] = ()  # worker hosts whose key apply will generate
    broker_keys: Mapping[str, str] = field(default_factory=dict)
    route_tls: RouteTls | None = field(default=None, repr=False)
    pending_route_tls: tuple[str, ...] = ()  # brokers whose certificate apply will issue
    revocations: tuple[Revocation, ...] = ()
    revoked_at: int = 0
    missing_creds: tuple[str, ...] = ()  # enabled workers without valid creds
    warnings: tuple[str, ...] = ()
    # Each used repository's deploy key, token and copied files, read from this machine.
    repo_secrets: Mapping[str, RepoSecrets] = field(default_factory=dict, repr=False)


NO_INPUTS = Inputs()  # tests and golden files: no creds, tunnel keys or versions


def known_broker_keys(fleet: Fleet, presented: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each broker's SSH key: as presented (when fleetctl connected), else pinned."""
    keys = {h.name: h.host_key for h in fleet.brokers if h.host_key}
    return keys | dict(presented or {})


def gather(fleet: Fleet, *, broker_keys: Mapping[str, str] | None = None) -> Inputs:
    """Read the store, the tunnel keys, the route TLS and the local versions; write nothing."""
    from fleetctl.artifacts import brokerbinary, pollerwheel
    from fleetctl.identity import credentials, repocreds, routetls, tunnelkeys

    store = credentials.plan_inputs(fleet)
    hosts = tunnel_hosts(fleet)
    keys = tunnelkeys.load(fleet, hosts)
    tls, pending_tls = routetls.load(fleet)
    nats = brokerbinary.desired_version(fleet.nats.server_binary)
    return Inputs(
        auth_config=store.auth_config,
        creds=store.creds,
        versions=Versions(pollerwheel.poller_version(), nats),
        tunnel_keys=keys,
        pending_tunnel_keys=tuple(h for h in hosts if h not in keys),
        broker_keys=known_broker_keys(fleet, broker_keys),
        route_tls=tls,
        pending_route_tls=pending_tls,
        revocations=store.revocations,
        revoked_at=store.revoked_at,
        missing_creds=store.missing,
        warnings=store.warnings,
        repo_secrets=repocreds.gather(fleet),
    )
