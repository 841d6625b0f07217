"""Apply's questions to the bus (fleetctl/reconcile/gate.py) against a real nats-server,
reached through the stand-in broker's forward as apply reaches it: what each worker runs
now, and the health gate (the new poller_version, from a process up at least --settle
seconds). The workers' ping answers come from responders on their ping subjects, shaped as
the poller's status (docs/messages.md); the fleet has no operator yet, so the server
accepts fleetctl without credentials."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fleetctl.bus.loop import Loop
from fleetctl.reconcile.gate import BusWorkers, in_flight
from tests.support.fakehosts import Log
from tests.support.natsserver import NatsServer
from tests.support.rollingfleet import BROKER, POLLER, live_view, rolling_fleet, stand_ins

pytestmark = pytest.mark.integration

ANSWERS: dict[str, dict[str, Any]] = {
    "w1": {"poller_version": POLLER, "uptime_s": 30.0, "in_flight": [{"task_id": "a"}] * 2},
    "w2": {"poller_version": "0.1.0+old", "uptime_s": 30.0, "in_flight": []},
    "w3": {"poller_version": POLLER, "uptime_s": 0.5, "current_tasks": [{"task_id": "b"}]},
}  # w4 has no poller answering


@pytest.fixture
def workers(server: NatsServer) -> Iterator[BusWorkers]:
    import nats

    loop = Loop()

    async def answer_pings() -> Any:
        nc = await nats.connect(server.url)
        for worker, status in ANSWERS.items():

            async def reply(msg: Any, status: dict[str, Any] = status) -> None:
                await msg.respond(json.dumps(status).encode())

            await nc.subscribe(f"af.worker.{worker}.ping", cb=reply)
        await nc.flush()
        return nc

    responder = loop.call(answer_pings())
    fleet = rolling_fleet(4)
    hosts = stand_ins(fleet, Log(), broker_host={"bus_port": server.port})
    probe = BusWorkers(live_view(fleet, hosts))
    try:
        yield probe
    finally:
        probe.close()
        loop.call(responder.close())
        loop.close()
    assert hosts[BROKER].log.of(BROKER) == [("forward", "127.0.0.1:4222")]  # one, reused


def test_what_each_worker_runs_now_is_its_ping_answer(workers: BusWorkers) -> None:
    now = workers.now(["w1", "w2", "w3", "w4"])
    assert sorted(now) == ["w1", "w2", "w3"]  # w4 does not answer
    assert {w: in_flight(s) for w, s in now.items()} == {"w1": 2, "w2": 0, "w3": 1}


def test_the_gate_wants_the_new_version_from_a_poller_that_stayed_up(
    workers: BusWorkers,
) -> None:
    failing = workers.settled(["w1", "w2", "w3", "w4"], POLLER, 2.0, 1.5)
    assert failing == {
        "w2": f"answers as poller 0.1.0+old, not {POLLER}",
        "w3": "was restarted 0.5 s before it answered: it does not stay up 2 s",
        "w4": "did not answer its ping within 1.5 s",
    }
    assert workers.settled(["w1"], POLLER, 2.0, 1.5) == {}
    assert workers.settled(["w2"], None, 2.0, 1.5) == {}  # after a rollback: any version
