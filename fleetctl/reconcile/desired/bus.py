"""The bus's desired state: its streams, a consumer per enabled worker and per shared
route queue, the credentials to revoke, and the broker hosts it lives on."""

from __future__ import annotations

from fleetctl.bus.names import NatsNames
from fleetctl.bus.resources import ConsumerSpec, StreamSpec, fleet_resources, route_consumer
from fleetctl.config.model import Fleet
from fleetctl.config.routes import queues as route_queues
from fleetctl.reconcile.desired.state import BusState
from fleetctl.reconcile.inputs import NO_INPUTS, Inputs
from fleetctl.reconcile.resources.members import MemberSpec
from fleetctl.reconcile.resources.revocations import RevocationSpec


def bus_state(fleet: Fleet, inputs: Inputs = NO_INPUTS) -> BusState:
    enabled = [w for w in fleet.workers if w.enabled]
    queues = {name: members for name, members in route_queues(fleet).items() if members}
    pairs = [(w.id, w.concurrency) for w in enabled]
    resources = fleet_resources(fleet.nats, pairs, queues, fleet.replicas)
    streams = tuple(r for r in resources if isinstance(r, StreamSpec))
    by_durable = {NatsNames.consumer(w.id): w.id for w in enabled}
    consumers = tuple((r, by_durable[r.durable]) for r in resources if isinstance(r, ConsumerSpec))
    revocations = tuple(RevocationSpec(r.worker, r.user) for r in inputs.revocations)
    homes = tuple(h.name for h in fleet.brokers)
    task_stream = NatsNames(fleet.nats.subject_prefix).task_stream
    concurrency = {w.id: w.concurrency for w in enabled}
    routes = tuple(
        route_consumer(fleet.nats, name, sum(concurrency[m] for m in members))
        for name, members in queues.items()
    )
    members = tuple(MemberSpec(h) for h in homes) if fleet.is_cluster else ()
    return BusState(homes, streams, consumers, revocations, task_stream, routes, members)
