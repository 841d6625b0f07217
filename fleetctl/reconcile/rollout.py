"""Apply a live plan: host programs in waves and batches, and the bus in its own place.

The plan's schedule (fleetctl/reconcile/plan/schedule.py) says the order: the bus's hosts
first (every poller needs the bus), then the worker hosts that have changes, batch by batch.
A cluster's brokers go in waves of their own (fleetctl/reconcile/brokerwaves.py): each one
whose nats-server restarts alone, between health gates (fleetctl/reconcile/brokergate.py),
the meta leader last; a broker that does not come back healthy stops the brokers after it,
and the bus's changes wait until every broker is done.
Each host is applied, checked and confirmed on its own (fleetctl/reconcile/hostapply.py); a
host that fails is rolled back to its previous version. Once more worker hosts than the
schedule's `max_failed` have failed, the rollout stops: the later batches are not touched.
The bus's changes are made once the host it is reached through has been applied; a failed
host's bus is not touched.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from fleetctl.bus import client as bus_client
from fleetctl.bus.names import NatsNames
from fleetctl.config.values import written_duration
from fleetctl.identity import credentials, fleetusers
from fleetctl.identity.natsaccess import worker_user
from fleetctl.reconcile import brokergate, jetstream
from fleetctl.reconcile.brokerwaves import broker_waves, restarts_nats
from fleetctl.reconcile.gate import BusWorkers, Workers
from fleetctl.reconcile.hostapply import Apply, HostResult, Reporter, Settings, apply_host
from fleetctl.reconcile.observation import LiveView
from fleetctl.reconcile.plan.bus import diff_bus
from fleetctl.reconcile.plan.schedule import schedule
from fleetctl.reconcile.plan.types import BusPlan, Plan
from fleetctl.reconcile.resources.members import MemberSpec
from fleetctl.reconcile.resources.revocations import RevocationSpec
from fleetctl.reconcile.sessions import Session, for_each_host
from fleetctl.transport.base import TransportError

BUS_STEP = "JetStream streams and consumers"
NOT_STARTED = "not started"

__all__ = ["HostResult", "Reporter", "Settings", "apply", "waves"]


def waves(plan: Plan) -> list[list[str]]:
    """The hosts to apply, in order, ignoring batches: the bus's hosts first (a cluster's
    one at a time where nats-server restarts: fleetctl/reconcile/brokerwaves.py), then the
    rest at once."""
    homes = plan.bus.homes if plan.bus else ()
    names = [h.name for h in plan.hosts if not h.error]
    first = [n for n in names if n in homes]
    rest = [n for n in names if n not in first]
    return [*broker_waves(plan, first), *([rest] if rest else [])]


def apply(
    view: LiveView,
    reporter: Reporter | None = None,
    on_applied: Callable[[HostResult], None] | None = None,
    settings: Settings | None = None,
    workers: Workers | None = None,
) -> list[HostResult]:
    """`on_applied` hears each host's result as it finishes (the apply use case remembers
    it); `workers` answers for the bus (default: the fleet's, through the broker)."""
    report = reporter or Reporter()
    if settings is None:
        settings = Settings(confirm_timeout=float(view.fleet.rollout.confirm_timeout))
    plan = view.plan
    order = plan.schedule or schedule(plan, view.fleet.rollout)
    probe = workers if workers is not None else BusWorkers(view)
    run = Apply(view, probe, settings, uuid.uuid4().hex[:12], report)
    results: dict[str, HostResult] = {}
    guard = threading.Lock()
    bus = plan.bus
    cluster = bus is not None and len(bus.homes) > 1

    def one(name: str) -> None:
        started = time.monotonic()
        result = apply_host(run, name)
        if (
            not cluster
            and bus is not None
            and name == bus.via
            and result.ok
            and (bus.changes or bus.error)
        ):
            _apply_bus(view, bus, view.sessions[name], result, report)
        result.seconds = time.monotonic() - started
        if on_applied is not None:
            on_applied(result)
        with guard:
            results[name] = result

    drain_error = _drain_departing(view, report)
    first = list(order.first)
    if drain_error is not None and bus is not None and bus.via in first:
        # Draining failed: leave the bus's hosts (and the revocation) for the next run.
        results[bus.via] = HostResult(bus.via, False, 0, DRAIN_STEP, drain_error)
        first.remove(bus.via)
    batched = {n for b in order.batches for n in b}
    idle = [h.name for h in plan.hosts if not h.error and h.name not in {*first, *batched}]
    idle = [n for n in idle if n not in results]
    try:
        with run.bundles:  # built for this run, removed when its uploads are done
            _brokers(view, broker_waves(plan, first), one, results, report)
            if cluster and bus is not None and (bus.changes or bus.error):
                _bus_after_brokers(view, bus, results, report)
            for_each_host(idle, one, view.options.parallel)  # nothing to change there
            _batches(run, order.batches, order.max_failed, order.pause, one, results)
    finally:
        probe.close()
    for result in results.values():
        report.finished(result)
    for name, error in view.errors.items():
        step = view.error_steps.get(name, "connect and observe")
        results[name] = HostResult(name, False, failed_step=step, error=error)
        report.finished(results[name])
    names = [h.name for h in plan.hosts]
    return [results[n] for n in names if n in results]


def _brokers(
    view: LiveView,
    waves: list[list[str]],
    one: Callable[[str], None],
    results: dict[str, HostResult],
    report: Reporter,
) -> None:
    """The bus's hosts, wave by wave. On a cluster each wave that restarts a broker waits
    for the others to be healthy first, and for the wave's brokers to be healthy after;
    once one is not, the brokers after it are left alone."""
    bus = view.plan.bus
    cluster = bus is not None and len(bus.homes) > 1
    halted: str | None = None  # why the remaining brokers are left alone
    for wave in waves:
        wave = [n for n in wave if n not in results]  # a failed drain left it out
        born = bus is not None and not bus.meta_leader  # no cluster to keep up yet
        if cluster and not born and halted is None and restarting(view.plan, wave):
            halted = _precheck(view, wave[0], report)
        if halted is not None:
            for n in wave:
                results[n] = HostResult(n, False, 0, brokergate.PRECHECK_STEP, halted)
            continue
        for_each_host(wave, one, view.options.parallel)
        if not cluster:
            continue
        _gate(view, [n for n in wave if n in results and results[n].ok], results, report)
        failed = [n for n in wave if n in results and not results[n].ok]
        if failed:
            halted = f"not restarted: {', '.join(failed)} did not come back healthy"


def restarting(plan: Plan, brokers: list[str]) -> bool:
    """A wave that restarts a broker's nats-server (one broker alone, by broker_waves)."""
    by_name = {h.name: h for h in plan.hosts}
    return any(restarts_nats(by_name[b]) for b in brokers if b in by_name)


def _precheck(view: LiveView, broker: str, report: Reporter) -> str | None:
    """Why `broker` must not restart now (another broker is down or behind), or None."""
    report.step(broker, brokergate.PRECHECK_STEP, 0, 0)
    others = brokergate.others_unhealthy(view, broker)
    if not others:
        return None
    why = "; ".join(f"{b}: {e}" for b, e in sorted(others.items()))
    return (
        f"not restarted: restarting a broker now could leave streams without a majority of "
        f"their copies ({why})"
    )


def _gate(
    view: LiveView, brokers: list[str], results: dict[str, HostResult], report: Reporter
) -> None:
    """The brokers a wave applied are healthy again (a new cluster's: together), or each
    that is not failed at the health gate."""
    if not brokers:
        return
    for b in brokers:
        report.step(b, brokergate.HEALTH_STEP, results[b].steps, results[b].steps)
    for broker, why in brokergate.wait_healthy(view, brokers).items():
        result = results[broker]
        result.ok = False
        result.failed_step = brokergate.HEALTH_STEP
        result.error = why


def _bus_after_brokers(
    view: LiveView, bus: BusPlan, results: dict[str, HostResult], report: Reporter
) -> None:
    """The bus's changes, once every broker wave is done: through the host it was read
    through, or another broker that was applied (a cluster's streams change copies only
    once all their brokers run)."""
    ways = [bus.via, *(h for h in bus.homes if h != bus.via)]
    ok = [h for h in ways if h in results and results[h].ok and h in view.sessions]
    if not ok:
        return
    result = results[ok[0]]
    # Read without a meta leader (a standalone broker becoming the cluster's first): its
    # streams did not come with it (docs/operations.md), so the bus is looked at again.
    # Read on a cluster going back to one broker: that broker restarted on a store of its
    # own, without the cluster's streams, so the bus is looked at again too.
    fresh = not bus.meta_leader or not view.fleet.is_cluster
    _apply_bus(view, bus, view.sessions[ok[0]], result, report, look_again=fresh)
    # The brokers that leave a cluster going back to one have no meta group to leave now:
    # they are stopped and removed by `fleetctl decommission` (docs/operations.md).
    gone = [
        c.name
        for c in bus.changes
        if c.kind == MemberSpec.kind and c.action == "delete" and view.fleet.is_cluster
    ]
    if gone and result.ok:
        report.step(result.name, MEMBER_STEP, result.steps, result.steps)
        failed = brokergate.remove_members(view, gone)
        result.steps += len(gone) - len(failed)
        if failed:
            result.ok = False
            result.failed_step = MEMBER_STEP
            result.error = "; ".join(f"{b}: {why}" for b, why in sorted(failed.items()))


MEMBER_STEP = "remove departed brokers from the cluster"


def _batches(
    run: Apply,
    batches: tuple[tuple[str, ...], ...],
    max_failed: int,
    pause: int,
    one: Callable[[str], None],
    results: dict[str, HostResult],
) -> None:
    """The worker hosts, batch by batch; once more than `max_failed` failed, the rest is
    not started."""
    report, parallel = run.report, run.view.options.parallel
    failed = 0
    stopped: str | None = None
    for i, batch in enumerate(batches, 1):
        if stopped is not None:
            for name in batch:
                results[name] = HostResult(name, False, 0, NOT_STARTED, stopped, skipped=True)
            continue
        if i > 1 and pause:
            report.note("rollout", f"pausing {written_duration(pause)} before batch {i}")
            time.sleep(pause)
        if len(batches) > 1:
            report.note("rollout", f"batch {i} of {len(batches)}: {', '.join(batch)}")
        for_each_host(batch, one, parallel)
        failed += sum(not results[n].ok for n in batch if n in results)
        if failed > max_failed and i < len(batches):
            stopped = (
                f"the rollout stopped after batch {i}: {failed} worker host(s) failed, "
                f"more than max_failed ({max_failed})"
            )
            report.note("rollout", stopped)


DRAIN_STEP = "dead-letter the departing workers' queued tasks"


def departing(view: LiveView) -> list[str]:
    """Workers whose consumer this apply deletes while tasks still wait on it."""
    bus = view.plan.bus
    if bus is None:
        return []
    prefix = NatsNames.consumer("")
    return [
        c.name.split("/", 1)[1].removeprefix(prefix)
        for c in bus.changes
        if c.kind == "consumer"
        and c.action == "delete"
        and c.name.split("/", 1)[1].startswith(prefix)
        and view.bus.queued.get(f"consumer {c.name}", 0) > 0
    ]


def _drain_departing(view: LiveView, report: Reporter) -> str | None:
    """Before the broker's wave revokes them: each departing worker's queued tasks become
    its dead letters, read as that worker (fleetctl/reconcile/drain.py). The error, if any."""
    workers = departing(view)
    bus = view.plan.bus
    session = view.sessions.get(bus.via) if bus else None
    if not workers or session is None:
        return None
    from fleetctl.reconcile import drain

    authority = credentials.load(view.fleet)
    report.step(session.host.name, DRAIN_STEP, 0, 0)
    try:
        for worker in workers:
            creds = authority.creds_path(worker_user(worker)) if authority else None
            if creds is None or not creds.exists():
                return f"no credentials left for {worker} to read its queued tasks with"
            who = drain.identity_of(worker, creds)
            with bus_client.through(session.transport, view.fleet, who) as endpoint:
                drain.drain(endpoint, view.fleet.nats.subject_prefix, worker)
    except (TransportError, bus_client.BusError) as e:
        return str(e)
    return None


def _apply_bus(
    view: LiveView,
    bus: BusPlan,
    session: Session,
    result: HostResult,
    report: Reporter,
    look_again: bool = False,
) -> None:
    """Revocations in the store (the broker already has the config that enforces them),
    then streams and consumers through the JetStream API. A bus the plan could not observe
    (nats-server down) is observed now that the broker's wave has started it again, so what
    is created is decided against what the server really holds."""
    name = session.host.name
    try:
        who = fleetusers.identity(view.fleet)
        with bus_client.through(session.transport, view.fleet, who) as endpoint:
            changes = bus.changes
            look_again = look_again or bus.error is not None
            if look_again or jetstream.ordered(changes):
                report.step(name, BUS_STEP, result.steps, result.steps)
                if not jetstream.wait_ready(endpoint):
                    raise bus_client.BusError(
                        "nats-server on the broker did not answer within 15 s"
                    )
            if look_again:
                seen = jetstream.observe(endpoint, view.desired.bus)
                fresh = diff_bus(view.desired.bus, seen, view.selection, session.host)
                changes = fresh.changes if fresh else ()
            if any(c.kind == RevocationSpec.kind for c in changes):
                inputs = view.inputs
                credentials.commit_revocations(view.fleet, inputs.revocations, inputs.revoked_at)
            api_changes = jetstream.ordered(changes)
            if api_changes:
                jetstream.apply(endpoint, api_changes)
        result.steps += len(api_changes)
    except (TransportError, bus_client.BusError) as e:
        result.ok = False
        result.failed_step = BUS_STEP
        result.error = str(e).removeprefix(f"{name}: ")
