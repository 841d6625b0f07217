"""In which order apply touches a cluster's brokers, from the plan alone. Pure.

A broker whose nats-server is not restarted (a new one, started for the first time; one
whose config is only reloaded; one with nothing to do) never takes a copy of the bus away,
so those go together, first: a new cluster's brokers start together and so find their
quorum. With no meta leader yet (a new cluster, or a single broker becoming a cluster's
first) every broker goes in one wave: there is no cluster to keep up, and new brokers
waiting for the standalone one to restart would never find their quorum. Each broker whose
nats-server restarts goes alone, after the broker before it is healthy again
(fleetctl/reconcile/brokergate.py), so a majority of the copies of every stream stays up
throughout; the JetStream meta leader goes last, so the meta group changes leader once, not
at every step. A restart is lame duck mode first (the unit's KillSignal): the broker hands
its leaderships and clients to the others before it stops.
"""

from __future__ import annotations

from fleetctl.layout import NATS_UNIT
from fleetctl.reconcile.plan.types import HostPlan, Plan


def restarts_nats(host: HostPlan) -> bool:
    """The host's program restarts (not starts, not reloads) nats-server."""
    return any(
        c.kind == "unit" and c.name == NATS_UNIT and c.unit_action == "restart"
        for c in host.changes
    )


def broker_waves(plan: Plan, brokers: list[str]) -> list[list[str]]:
    """`brokers` (planned, observed) as waves: the ones not restarted together, then each
    restarted one alone, the meta leader last. One broker: one wave, as it always was."""
    if len(plan.bus.homes if plan.bus else ()) <= 1:
        return [brokers] if brokers else []
    leader = plan.bus.meta_leader if plan.bus else None
    if leader is None:
        # No cluster to keep up yet (a new one, or one broker running alone becoming its
        # first): the brokers start together, or the new ones never find a majority.
        return [brokers] if brokers else []
    by_name = {h.name: h for h in plan.hosts}
    alone = [b for b in brokers if restarts_nats(by_name[b])]
    together = [b for b in brokers if b not in alone]
    alone.sort(key=lambda b: b == leader)  # stable: servers.yaml order, the leader last
    waves: list[list[str]] = [together, *([b] for b in alone)]
    return [w for w in waves if w]
