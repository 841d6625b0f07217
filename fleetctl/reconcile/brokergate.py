"""The health gates of a cluster's rolling apply, through fleet-sys: a broker is restarted
only while every other broker is healthy (else the restart could leave a stream without a
majority of its copies), and the next wave starts only once the brokers just applied are
healthy again: up, in the meta group, every stream and consumer they hold current
(nats-server's HEALTHZ, the check its own docs give for rolling upgrades).

The brokers are asked through an SSH forward over the session of a broker that is not the
one being restarted, so the question does not wait for the answer's own restart."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence

from fleetctl.bus import client as bus_client
from fleetctl.bus import clusterview
from fleetctl.identity import fleetusers
from fleetctl.reconcile.observation import LiveView
from fleetctl.transport.base import TransportError

HEALTH_STEP = "wait until nats-server is healthy (JetStream current)"
PRECHECK_STEP = "check the other brokers are healthy"
# A restart is the lame duck's 30 s at most, then the start, then catching up.
HEALTH_WAIT = 180.0
PRECHECK_WAIT = 10.0


class GateError(Exception):
    """The cluster could not be asked (fleet-sys has no creds, no broker session answers)."""


@contextlib.contextmanager
def _system(view: LiveView, avoid: Sequence[str]) -> Iterator[bus_client.Endpoint]:
    """fleet-sys's endpoint through the first broker session not in `avoid`."""
    who = fleetusers.system_identity(view.fleet)
    if who.creds is None:
        raise GateError("no fleet-sys credentials: run `fleetctl creds init`")
    homes = view.plan.bus.homes if view.plan.bus else ()
    ways = [h for h in homes if h not in avoid and h in view.sessions]
    ways += [h for h in homes if h in avoid and h in view.sessions]  # the last resort
    errors = []
    for home in ways:
        stack = contextlib.ExitStack()
        try:
            transport = view.sessions[home].transport
            endpoint = stack.enter_context(bus_client.through(transport, view.fleet, who))
        except TransportError as e:
            stack.close()
            errors.append(f"{home}: {e}")
            continue
        with stack:
            yield endpoint
        return
    raise GateError("no broker to ask through: " + ("; ".join(errors) or "none connected"))


async def _unhealthy(
    endpoint: bus_client.Endpoint, brokers: Sequence[str], seconds: float
) -> dict[str, str]:
    """Each of `brokers` not healthy within `seconds`, with why."""
    nc = await bus_client.connect(endpoint)
    prefix = endpoint.identity.inbox_prefix
    try:
        found = {}
        for broker in brokers:
            seen = await clusterview.wait_healthy(nc, prefix, broker, seconds)
            if seen is None:
                found[broker] = "does not answer"
            elif not seen.healthy:
                found[broker] = seen.health or "not healthy"
        return found
    finally:
        await nc.close()


def wait_healthy(
    view: LiveView, brokers: Sequence[str], seconds: float = HEALTH_WAIT
) -> dict[str, str]:
    """The brokers that did not become healthy in time, with why (empty: all are)."""
    try:
        with _system(view, brokers) as endpoint:
            return bus_client.run(_unhealthy(endpoint, brokers, seconds))
    except (GateError, bus_client.BusError) as e:
        return dict.fromkeys(brokers, f"cannot ask the cluster: {e}")


def others_unhealthy(view: LiveView, broker: str) -> dict[str, str]:
    """Before `broker` restarts: every other broker that is not healthy now."""
    homes = view.plan.bus.homes if view.plan.bus else ()
    others = [h for h in homes if h != broker]
    try:
        with _system(view, [broker]) as endpoint:
            return bus_client.run(_unhealthy(endpoint, others, PRECHECK_WAIT))
    except (GateError, bus_client.BusError) as e:
        return dict.fromkeys(others, f"cannot ask the cluster: {e}")


async def _remove(endpoint: bus_client.Endpoint, brokers: Sequence[str]) -> dict[str, str]:
    from fleetctl.reconcile.resources.members import MemberSpec

    nc = await bus_client.connect(endpoint)
    try:
        found = {}
        for broker in brokers:
            subject, body = MemberSpec.remove_request(broker)
            reply = await bus_client.request(nc, subject, json.loads(body))
            error = reply.get("error") or {}
            if error:
                found[broker] = str(error.get("description") or error)
        return found
    finally:
        await nc.close()


def remove_members(view: LiveView, brokers: Sequence[str]) -> dict[str, str]:
    """Remove departed brokers from the JetStream meta group, as fleet-sys: JetStream then
    places their copies of each stream on the brokers that remain. Why each failed."""
    try:
        with _system(view, brokers) as endpoint:
            return bus_client.run(_remove(endpoint, brokers))
    except (GateError, bus_client.BusError) as e:
        return dict.fromkeys(brokers, f"cannot ask the cluster: {e}")
