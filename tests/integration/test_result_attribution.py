"""Results are attributed by the server: a compromised worker can neither forge nor suppress
another worker's result, and reads back only its own.

Real broker (operator mode, the fleet's own permissions), the victim is a real poller with its
issued creds; the forger holds a worker's creds, as an agent that read its poller's creds file
would. docs/security.md cites these tests by name.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest

from fleetctl.identity import natsaccess as na
from tests.support.nscfleet import (
    DENIED_TIMEOUT,
    Conn,
    connect,
    create_resources,
    fleet_server,
    make_fleet,
)
from tests.support.poller_harness import Poller, directive, poller_env, run, wait_until

pytestmark = pytest.mark.integration
TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)
FORGED = {"task_id": "t1", "worker_id": "w2", "status": "completed", "output": "FORGED"}
# Every dedup id the victim's result could plausibly carry, old scheme and new.
# ... and every dead-letter id it could carry (the old scheme: the task's stream sequence).
VICTIM_IDS: tuple[str, ...] = (
    *("t1", "t1:w2", "t1:w2:rejected:1", "w2:t1", "af.result.w2.t1"),
    *(f"dead:AF_TASKS:{seq}" for seq in range(1, 6)),
)
# The victim's result subject, the old shared one, and the victim's status and dead letters.
VICTIM_SUBJECTS = ("af.result.w2.t1", "af.task.t1.completed", "af.worker.w2.status", "af.dead.w2")


async def _forge_everything(forger: Conn) -> list[str]:
    """Publish the forgery on every subject the forger may publish, and on the victim's,
    with each of the victim's ids; returns the subjects the server stored it on."""
    js = forger.nc.jetstream()
    body = json.dumps(FORGED).encode()
    stored: list[str] = []
    for subject in ("af.result.w1.t1", "af.result.w1.w2", "af.dead.w1"):
        for msg_id in VICTIM_IDS:
            ack = await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id})
            stored.append(ack.stream and subject)
    for subject in VICTIM_SUBJECTS:
        for msg_id in VICTIM_IDS:
            await forger.nc.publish(subject, body, headers={"Nats-Msg-Id": msg_id})
    await forger.nc.flush()
    for subject in VICTIM_SUBJECTS:
        await forger.wait_violation(subject)
    return stored


def test_forging_worker_leaves_the_victims_result_intact_and_attributed(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    n = fleet.names
    work = tmp_path / "work"
    work.mkdir()
    with fleet_server(fleet) as server:

        async def go() -> None:
            async with connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
                await create_resources(fleet, admin)
            creds = str(fleet.workers["w2"].creds_path)
            env = poller_env(server.url, "w2", work, NATS_CREDS=creds)
            victim = Poller(env, work / "poller.log").start()
            try:
                async with (
                    connect(server.url, fleet.workers["w1"], n.inbox_prefix("w1")) as forger,
                    connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
                    connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                ):
                    # Before the victim runs the task: pre-empt it with its own ids.
                    stored = await _forge_everything(forger)
                    assert set(stored) == {"af.result.w1.t1", "af.result.w1.w2", "af.dead.w1"}

                    pjs = pub.nc.jetstream()
                    task = {"task_id": "t1", "instructions": directive(print="genuine")}
                    await pjs.publish(n.inbox("w2"), json.dumps(task).encode())

                    async def victim_stored() -> bool:
                        try:
                            await pjs.get_msg(n.results_stream, subject=n.result("w2", "t1"))
                        except nats.js.errors.NotFoundError:
                            return False
                        return True

                    assert await wait_until(victim_stored, 20), victim.events()[-5:]
                    assert not victim.logged("already_done")  # the forgery did not count
                    # A poison task: the victim's dead letter is stored too.
                    await pjs.publish(n.inbox("w2"), b"not json")
                    assert await wait_until(lambda: _dead_letters(admin, "w2", 1), 20)

                    # And again after it stored its result.
                    await _forge_everything(forger)
                    got = await pjs.get_msg(n.results_stream, subject=n.result("w2", "t1"))
                    result = json.loads(got.data or b"")
                    assert result["output"] == "genuine" and result["status"] == "completed"
                    assert n.attribution(got.subject or "") == ("w2", "t1")
                    # The forged copy is there, attributed to whoever published it.
                    forged = await pjs.get_msg(n.results_stream, subject=n.result("w1", "t1"))
                    assert json.loads(forged.data or b"")["worker_id"] == "w2"  # the body lies
                    assert n.attribution(forged.subject or "") == (
                        "w1",
                        "t1",
                    )  # the subject does not
            finally:
                victim.stop()

        run(go())


async def _dead_letters(admin: Conn, worker: str, count: int) -> bool:
    body = json.dumps({"subjects_filter": f"af.dead.{worker}"}).encode()
    info = json.loads((await admin.nc.request("$JS.API.STREAM.INFO.AF_DEAD", body, 5)).data)
    return bool((info["state"].get("subjects") or {}).get(f"af.dead.{worker}") == count)


def test_a_worker_reads_back_only_its_own_results(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    n = fleet.names
    with fleet_server(fleet) as server:

        async def go() -> None:
            async with (
                connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                connect(server.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
                connect(server.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
            ):
                await create_resources(fleet, admin)
                await w2.nc.jetstream().publish(n.result("w2", "t1"), b'{"status":"completed"}')
                await w1.nc.jetstream().publish(n.result("w1", "t1"), b'{"status":"failed"}')
                js = w1.nc.jetstream()
                mine = await js.get_msg(n.results_stream, subject=n.result("w1", "t1"), direct=True)
                assert mine.data == b'{"status":"failed"}'
                with pytest.raises(nats.js.errors.NotFoundError):
                    await js.get_msg(n.results_stream, subject=n.result("w1", "t2"), direct=True)
                refused = [
                    # direct get of another worker's subject, or a wildcard over all workers
                    f"$JS.API.DIRECT.GET.{n.results_stream}.{n.result('w2', 't1')}",
                    f"$JS.API.DIRECT.GET.{n.results_stream}.af.result.*.t1",
                    f"$JS.API.DIRECT.GET.{n.results_stream}.af.result.>",
                    # the body-addressed forms (any subject, any sequence)
                    f"$JS.API.DIRECT.GET.{n.results_stream}",
                    f"$JS.API.STREAM.MSG.GET.{n.results_stream}",
                    f"$JS.API.CONSUMER.CREATE.{n.results_stream}",
                    f"$JS.API.CONSUMER.CREATE.{n.results_stream}.spy",
                ]
                for subject in refused:
                    with pytest.raises(TIMEOUTS):
                        await w1.nc.request(subject, b'{"seq": 1}', timeout=DENIED_TIMEOUT)
                    await w1.wait_violation(subject)
                # nor by subscribing to the results as they are published
                await w1.nc.subscribe("af.result.w2.*")
                await w1.wait_violation("af.result.w2.*")

        run(go())
