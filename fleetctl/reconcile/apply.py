"""The apply use case: plan the fleet against its hosts, then make the hosts match.

`fleetctl apply` parses its options, calls `plan`, shows the plan, asks, calls `apply` and
prints the results; everything in between is here, so another front end (a test, a
dashboard) applies exactly as the command does. Applied hosts are remembered as they
finish (fleetctl/reconcile/remembered.py), so a host that later leaves servers.yaml is not
abandoned.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleetctl.config.model import Fleet, Share
from fleetctl.config.tunnels import tunnel_hosts
from fleetctl.identity import credentials, routetls, tunnelkeys
from fleetctl.reconcile import departed, remembered, rollout
from fleetctl.reconcile.brokerfit import refuse_unfit
from fleetctl.reconcile.facts import ObservedBus, most_copies
from fleetctl.reconcile.hostapply import PING_WAIT, HostResult, Reporter, Settings
from fleetctl.reconcile.inputs import gather
from fleetctl.reconcile.observation import LiveView, live_plan
from fleetctl.reconcile.plan.schedule import scheduled
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Plan
from fleetctl.reconcile.program import Drain, owned_after
from fleetctl.reconcile.sessions import Options, presented_key


class Refused(Exception):
    """Apply will not start: `what` went wrong, `fix` says what to do."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


@dataclass(frozen=True)
class Issued:
    """What `issue_credentials` did, for the front end to report."""

    created_operator: bool
    issued: tuple[str, ...]
    renewed: tuple[str, ...]


@dataclass
class Pending:
    """A live plan held open (sessions, host locks) until it is applied or closed."""

    view: LiveView
    shown: Plan  # the plan as shown: with the hosts that left servers.yaml (`--all` only)

    @property
    def converged(self) -> bool:
        """Nothing to do: every host reached is as applied (and confirmed), and the bus was
        seen."""
        unseen = bool(self.view.plan.bus and self.view.plan.bus.error)  # applied once it answers
        left = any(s.observed.kept.unconfirmed for s in self.view.sessions.values())
        return self.view.plan.summary.empty and not unseen and not left

    def close(self) -> None:
        self.view.close()


def issue_credentials(fleet: Fleet, worker_ids: Sequence[str]) -> Issued:
    """`apply --issue-creds`: the operator if there is none, then the enabled workers' missing
    or expiring credentials."""
    authority, created = credentials.init(fleet)
    enabled = set(credentials.enabled_ids(fleet))
    targets = [w for w in worker_ids if w in enabled]
    issued = credentials.issue(fleet, authority, targets)
    renewed = credentials.renew_expiring(fleet, authority, targets)
    return Issued(created, tuple(sorted(issued)), tuple(renewed))


def plan(
    fleet: Fleet,
    selection: Selection,
    options: Options,
    *,
    workers: Sequence[str] = (),
    everything: bool = False,
    batch: Share | None = None,
) -> Pending:
    """Gather, connect, lock and observe every planned host; the plan to show and apply,
    with its schedule (`batch`: `apply --batch`, else fleet.yaml's `rollout.batch`).

    Refuses up front to start a worker without credentials. The only writes here: tunnel
    keys that do not exist yet are generated (the plan needs their public halves), and a
    cluster's route certificates that are missing or stale are issued."""
    if fleet.is_cluster:
        credentials.ensure_system_user(fleet)  # the rolling restart reads health through it
    inputs = gather(fleet)
    lacking = [w for w in (workers or credentials.enabled_ids(fleet)) if w in inputs.missing_creds]
    if lacking:
        raise Refused(
            f"no NATS credentials for {', '.join(lacking)}: their pollers could not start",
            "add --issue-creds, or run `fleetctl creds issue --all` first",
        )
    if inputs.pending_tunnel_keys or inputs.pending_route_tls:
        tunnelkeys.ensure(fleet, tunnel_hosts(fleet))
        routetls.ensure(fleet)
        inputs = gather(fleet)
    known = remembered.load(fleet)  # a damaged file fails before any host is touched
    view = live_plan(fleet, inputs, selection, options, lock=True)
    try:
        refuse_unfit(view)  # a broker that could not run the nats-server it would get
        gone = departed.offline(fleet, known) if everything else ()
    except BaseException:
        view.close()
        raise
    queued = queued_on_a_standalone_broker(fleet, view.bus)
    if queued:
        view.close()
        raise Refused(
            f"{queued} task(s) are queued on a broker that runs alone: nats-server does not "
            "carry a standalone server's streams into a cluster, so they would be lost",
            "stop sending tasks and let the queued ones finish (fleetctl status), then apply "
            "again (docs/operations.md, 'Adding brokers to a single-broker fleet')",
        )
    busy = busy_leaving_a_cluster(fleet, view.bus)
    if busy:
        view.close()
        raise Refused(
            f"{busy} task(s) are queued or running on a cluster that goes back to one broker: "
            "the broker that stays starts again on a single-server store, without the "
            "cluster's streams, so they would be lost",
            "stop sending tasks and let the queued and running ones finish (fleetctl status), "
            "then apply again (docs/operations.md, 'Going back from three brokers to one')",
        )
    view.plan = scheduled(view.plan, fleet.rollout, batch)
    return Pending(view, dataclasses.replace(view.plan, departed=gone))


def leaving_a_cluster(fleet: Fleet, bus: ObservedBus) -> bool:
    """One broker wanted where the streams observed have copies on several: a cluster
    going back to one broker (docs/operations.md)."""
    return not fleet.is_cluster and bus.reachable and most_copies(bus) > 1


def busy_leaving_a_cluster(fleet: Fleet, bus: ObservedBus) -> int:
    """Tasks queued or delivered and not yet acknowledged on a cluster that goes back to
    one broker (0 for anything else): the one broker starts on a store of its own, and a
    result stored while its pollers still reach the brokers that leave would stay there."""
    if not leaving_a_cluster(fleet, bus):
        return 0
    return sum(bus.queued.values()) + sum(bus.running.values())


def queued_on_a_standalone_broker(fleet: Fleet, bus: ObservedBus) -> int:
    """Tasks waiting on a broker that becomes a cluster's first (a standalone server, as
    fleet-sys reads it, in a fleet of three brokers): 0 for anything else."""
    cluster = bus.cluster
    if not (fleet.is_cluster and bus.reachable and cluster and cluster.brokers):
        return 0
    if any(b.clustered for b in cluster.brokers.values()):
        return 0
    return sum(bus.queued.values())


def settings(fleet: Fleet, options: Options, drain: Drain) -> Settings:
    """How this apply changes each host; refused when the hosts could roll back by
    themselves before apply has checked them."""
    timeout = fleet.rollout.confirm_timeout
    needed = options.settle + PING_WAIT + CONFIRM_MARGIN
    if timeout <= needed:
        raise Refused(
            f"rollout.confirm_timeout ({timeout} s) is too short for --settle "
            f"{options.settle:g}: a host would roll back before apply confirmed it",
            f"set rollout.confirm_timeout above {needed:g} s, or a shorter --settle",
        )
    return Settings(confirm_timeout=float(timeout), drain=drain)


CONFIRM_MARGIN = 5  # seconds for the confirmation's own round trip


def remember_converged(pending: Pending) -> None:
    """A no-op apply still records every host it found as applied."""
    view = pending.view
    remembered.remember(view.fleet, [entry(view, n) for n in view.sessions])


def apply(
    view: LiveView,
    reporter: Reporter | None = None,
    on_applied: Callable[[HostResult], None] | None = None,
    how: Settings | None = None,
) -> list[HostResult]:
    """Run the rollout; each host that succeeds is remembered as it finishes."""
    record = Recorder(view)

    def applied(result: HostResult) -> None:
        record(result)
        if on_applied is not None:
            on_applied(result)

    try:
        return rollout.apply(view, reporter, on_applied=applied, settings=how)
    finally:
        record.flush()


class Recorder:
    """Remember each host the rollout applied, as it finishes. Written at most once a second
    (and by `flush`, at the end): a large fleet's apply would otherwise rewrite the whole
    file once per host."""

    def __init__(self, view: LiveView, interval: float = 1.0) -> None:
        self._view = view
        self._interval = interval
        self._pending: list[remembered.RememberedHost] = []
        self._written = -math.inf  # the first host is written at once
        self._guard = threading.Lock()

    def __call__(self, result: HostResult) -> None:
        if not result.ok:
            return
        with self._guard:
            self._pending.append(entry(self._view, result.name))
            if time.monotonic() - self._written >= self._interval:
                self._write()

    def flush(self) -> None:
        with self._guard:
            self._write()

    def _write(self) -> None:
        if self._pending:
            remembered.remember(self._view.fleet, self._pending)
            self._pending = []
        self._written = time.monotonic()


def entry(view: LiveView, name: str) -> remembered.RememberedHost:
    """What to remember of a host `view` observed, as it is once its plan is applied."""
    session = view.sessions[name]
    host = session.host
    host_plan = next(h for h in view.plan.hosts if h.name == name)
    return remembered.RememberedHost(
        name=name,
        address=host.address,
        port=host.port,
        user=host.user,
        roles=tuple(sorted(host.roles)),
        host_key=presented_key(session) or host.host_key,
        applied_at=int(time.time()),
        revision=view.fleet.revision,
        resources=tuple(sorted(owned_after(host_plan, session.observed))),
    )
