"""A broker gets only a nats-server binary it can run.

The binary is this machine's (or fleet.yaml's, fleetctl/artifacts/brokerbinary.py), so an
x86_64 machine applying to an arm64 broker would upload an x86_64 binary, and the broker's
nats-server would fail at its start ("Exec format error"), after the old one was stopped.
The plan knows each host's platform from its agent, so a broker whose plan installs
nats-server is checked there (`refuse_unfit`): it is left out of the plan, with why, and
apply touches nothing on it. Apply checks again before it uploads anything to a host
(fleetctl/reconcile/hostapply.py), for a plan that did not.
"""

from __future__ import annotations

from collections.abc import Mapping

from fleetctl.artifacts import brokerbinary
from fleetctl.reconcile import facts
from fleetctl.reconcile.observation import LiveView
from fleetctl.reconcile.plan.types import HostPlan, Plan
from fleetctl.reconcile.resources.packages import NATS_PACKAGE, PackageSpec

FIT_STEP = "check the nats-server binary"


def installs_nats(host: HostPlan) -> bool:
    """The host's plan installs nats-server (so apply uploads the binary)."""
    return any(
        c.action != "delete" and isinstance(c.resource, PackageSpec) and c.name == NATS_PACKAGE
        for c in host.changes
    )


def unfit_hosts(
    plan: Plan, platforms: Mapping[str, str], binary: brokerbinary.BrokerBinary
) -> dict[str, str]:
    """Each planned host that would get `binary` and could not run it, with why: by the
    platform its agent reported (`platforms`, by host)."""
    out: dict[str, str] = {}
    for host in plan.hosts:
        if host.error or host.name not in platforms or not installs_nats(host):
            continue
        why = binary.unfit_for(host.name, platforms[host.name])
        if why is not None:
            out[host.name] = why
    return out


def refuse_unfit(view: LiveView) -> None:
    """Leave out of the plan each host that would get a nats-server it cannot run."""
    if not any(installs_nats(h) for h in view.plan.hosts if not h.error):
        return  # not even a look at the binary: most plans install no nats-server
    binary = brokerbinary.resolve(view.fleet.nats.server_binary)
    platforms = {n: facts.python_facts(s.raw).platform for n, s in view.sessions.items()}
    refused = unfit_hosts(view.plan, platforms, binary)
    if refused:
        view.refuse(refused, FIT_STEP)
