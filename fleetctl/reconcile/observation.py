"""A live plan: connect to, lock and observe every planned host, each in a thread of its
own, read the bus through its first home's connection meanwhile (through the next home's
when that one does not answer), then diff.

What to observe on a host does not depend on the broker's SSH key (which the tunnels'
known_hosts holds), only on whether it is known, so hosts are observed as soon as they are
connected; the desired state is rendered again with the key the broker presented.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from fleetctl.bus import client as bus_client
from fleetctl.config.model import Fleet, Host
from fleetctl.config.tunnels import dialers_of
from fleetctl.identity import fleetusers
from fleetctl.reconcile import agent_client, facts, jetstream
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.desired.state import FleetState
from fleetctl.reconcile.facts import ObservedBus
from fleetctl.reconcile.inputs import Inputs
from fleetctl.reconcile.plan.fleet import make_plan, planned_hosts
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.plan.types import Plan
from fleetctl.reconcile.sessions import (
    Options,
    Session,
    connect,
    for_each_host,
    presented_key,
    sole_accepted_key,
    take_lock,
)
from fleetctl.transport.base import TransportError

# Stands in for an unpinned broker's SSH key until it is seen: never written.
SOME_BROKER_KEY = "ssh-ed25519 not-yet-seen"


@dataclass
class LiveView:
    """Everything a live plan was made from; `apply` executes against the same sessions."""

    fleet: Fleet
    inputs: Inputs
    desired: FleetState
    sessions: dict[str, Session]
    errors: dict[str, str]
    bus: ObservedBus
    plan: Plan
    options: Options
    selection: Selection
    # What a host in `errors` failed at, when not at connecting and observing it (`refuse`).
    error_steps: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()

    def refuse(self, refused: Mapping[str, str], step: str) -> None:
        """Leave these hosts out, as hosts that could not be observed are (their locks let
        go, nothing planned or applied there), each with why, as failed at `step`."""
        for name, why in refused.items():
            session = self.sessions.pop(name, None)
            if session is not None:
                session.close()
            self.errors[name] = why
            self.error_steps[name] = step
        self.plan = make_plan(
            self.desired,
            {n: s.observed for n, s in self.sessions.items()},
            bus=self.bus,
            selection=self.selection,
            revision=self.fleet.revision,
            warnings=self.plan.warnings,
            errors=self.errors,
        )


def live_plan(
    fleet: Fleet, inputs: Inputs, selection: Selection, options: Options, *, lock: bool
) -> LiveView:
    """Connect, lock (apply) and observe every planned host and the bus; then diff."""
    dialed = _dialed_brokers(fleet)  # the tunnels': their SSH keys go in known_hosts
    expected = {
        b.name: inputs.broker_keys.get(b.name) or sole_accepted_key(b, options) for b in dialed
    }
    guessed = {n: k or SOME_BROKER_KEY for n, k in expected.items()}
    shape = desired_state(fleet, _with_keys(inputs, guessed))
    names = planned_hosts(shape, selection)
    homes = [h for h in shape.bus.homes if h in names]  # the ways to the bus, in order
    first = homes[0] if homes else None
    sessions: dict[str, Session] = {}
    errors: dict[str, str] = {}
    seen_bus: dict[str, ObservedBus] = {}
    guard = threading.Lock()

    def visit(name: str) -> None:
        host = fleet.host(name)
        try:
            transport = connect(host, options)
        except TransportError as e:
            with guard:
                errors[name] = e.message
            return
        session = Session(host, transport)
        try:
            if lock:
                session.lock = take_lock(transport, options)
            req = facts.request(
                shape.hosts[name],
                with_contents=options.with_contents,
                with_usage=options.with_usage,
            )
            with ThreadPoolExecutor(max_workers=1) as beside:  # a thread only if submitted
                # The bus is read through its first home's connection meanwhile.
                bus: Future[ObservedBus] | None = (
                    beside.submit(_observe_bus, fleet, shape, session) if name == first else None
                )
                session.raw = _observe_host(session, req)
                session.observed = facts.parse(session.raw)
                if bus is not None:
                    seen_bus[name] = bus.result()
        except (TransportError, bus_client.BusError) as e:
            session.close()
            with guard:
                errors[name] = str(e).removeprefix(f"{name}: ")
            return
        with guard:
            sessions[name] = session

    for_each_host(names, visit, options.parallel)
    keys: dict[str, str] = {}
    for broker in dialed:
        key = inputs.broker_keys.get(broker.name)
        if key is None and broker.name in sessions:
            key = presented_key(sessions[broker.name])
        elif key is None and broker.name not in names:
            # Narrowed to other hosts: the tunnels' known_hosts still needs the broker's key.
            key = expected[broker.name] or _peek_key(broker, options)
        if key is not None:
            keys[broker.name] = key
    as_guessed = all(k is not None and keys.get(n) == k for n, k in expected.items())
    desired = shape if as_guessed else desired_state(fleet, _with_keys(inputs, keys))
    warnings = list(inputs.warnings)
    unreached = [b.name for b in dialed if b.name not in keys]
    if unreached:
        which = "the broker" if not fleet.is_cluster else f"the broker {', '.join(unreached)}"
        warnings.append(f"{which} was not reached, so the tunnels' known_hosts is not planned")
    bus = _through_homes(fleet, shape, homes, sessions, errors, seen_bus)
    warnings += bus.warnings
    plan = make_plan(
        desired,
        {n: s.observed for n, s in sessions.items()},
        bus=bus,
        selection=selection,
        revision=fleet.revision,
        warnings=tuple(warnings),
        errors=errors,
    )
    return LiveView(fleet, inputs, desired, sessions, errors, bus, plan, options, selection)


def _dialed_brokers(fleet: Fleet) -> list[Host]:
    """The brokers some host keeps a tunnel to."""
    return [b for b in fleet.brokers if dialers_of(fleet, b.name)]


def _with_keys(inputs: Inputs, keys: dict[str, str]) -> Inputs:
    return dataclasses.replace(inputs, broker_keys={**inputs.broker_keys, **keys})


def _peek_key(broker: Host, options: Options) -> str | None:
    """The SSH key an unpinned broker presents: connect, read it, disconnect."""
    try:
        transport = connect(broker, options)
    except TransportError:
        return None
    try:
        return presented_key(Session(broker, transport))
    except TransportError:  # lost at once: the key stays unknown, and the plan says so
        return None
    finally:
        transport.close()


def _observe_host(session: Session, req: dict[str, object]) -> dict[str, object]:
    """One agent round trip: through the lock's process when locked, else its own."""
    if session.lock is not None:
        return agent_client.observe_under_lock(session.lock, session.host.name, req)
    return agent_client.observe(session.transport, req)


def _through_homes(
    fleet: Fleet,
    shape: FleetState,
    homes: list[str],
    sessions: dict[str, Session],
    errors: dict[str, str],
    seen: dict[str, ObservedBus],
) -> ObservedBus:
    """The bus as the first of its homes that answers sees it: the first home's reading
    (taken beside its host's observation), else each next home's in turn, read now over
    its session. When none answers, the first reading, which says why; nothing read (no
    home could be observed): an empty reading, and the plan leaves the bus out."""
    readings: list[ObservedBus] = []
    for name in homes:
        reading = seen.get(name)
        if reading is None and name in sessions:  # not the first home: read it now
            try:
                reading = _observe_bus(fleet, shape, sessions[name])
            except (TransportError, bus_client.BusError) as e:
                sessions.pop(name).close()
                errors[name] = str(e).removeprefix(f"{name}: ")
                continue
        if reading is None:
            continue
        reading = dataclasses.replace(reading, via=name)
        if reading.reachable:
            return reading
        readings.append(reading)
    return readings[0] if readings else ObservedBus()


def _observe_bus(fleet: Fleet, shape: FleetState, session: Session) -> ObservedBus:
    """The bus's streams and consumers, through a forward over the broker's connection; on a
    cluster, each broker as fleet-sys sees it too (members, meta leader, health)."""
    who = fleetusers.identity(fleet)
    with bus_client.through(session.transport, fleet, who) as endpoint:
        seen = jetstream.observe(endpoint, shape.bus)
    system = fleetusers.system_identity(fleet)
    copies = facts.most_copies(seen)
    if not (seen.reachable and system.creds is not None):
        return seen
    if not fleet.is_cluster and copies <= 1:
        return seen
    # One broker wanted where the streams have copies on several (a cluster going back to
    # one broker): the cluster is read too, for the plan to show the brokers that leave.
    with bus_client.through(session.transport, fleet, system) as endpoint:
        view = jetstream.observe_cluster(endpoint, max(len(fleet.brokers), copies))
    return facts.with_cluster(seen, view, facts.staying(fleet))
