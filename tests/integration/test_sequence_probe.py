"""A residual, measured so docs/security.md stays exact: with `Nats-Expected-Last-Subject-
Sequence` and `...-Subject` on a subject of its own, a worker learns the last sequence stored
on any subject of the same stream, another worker's included. nats-server has no permission
or stream setting that refuses these headers (permissions are by subject only), so what it
reveals is pinned here: a number per subject of the streams it may write to, nothing of any
message's content, nothing of any other stream, and the probe stores nothing."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest

from fleetctl.identity import natsaccess as na
from poller import config
from poller.budget import Budget, Limits, today
from poller.lease import Lease, Leases
from tests.support.nscfleet import Conn, connect, create_resources, fleet_server, make_fleet
from tests.support.poller_harness import poller_env

pytestmark = pytest.mark.integration

NEVER = 999_999_999_999  # a sequence no test stream reaches: the check always fails
EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"


async def _probe(conn: Conn, own: str, stream: str, target: str) -> int:
    """The last sequence on `target`, told by the refusal of a publish on `own`."""
    headers = {EXPECTED_SEQ: str(NEVER), EXPECTED_SUBJECT: target}
    with pytest.raises(nats.js.errors.APIError) as refused:
        await conn.nc.jetstream().publish(own, b"probe", stream=stream, headers=headers)
    assert refused.value.err_code == 10071
    found = re.fullmatch(r"wrong last sequence: (\d+)", refused.value.description or "")
    assert found, refused.value.description
    return int(found[1])


async def _states(admin: Conn, streams: list[str]) -> dict[str, Any]:
    out = {}
    for s in streams:
        reply = await admin.nc.request(f"$JS.API.STREAM.INFO.{s}", b"", timeout=5)
        state = json.loads(reply.data)["state"]
        out[s] = (state["messages"], state["last_seq"])
    return out


def test_what_a_worker_learns_of_other_workers_subjects_by_sequence_probes(
    tmp_path: Path,
) -> None:
    asyncio.run(_probes(tmp_path))


async def _probes(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    n = fleet.names
    leases, spend, bucket = n.lease_stream, n.spend_stream, n.spend_bucket
    day = today()
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as publisher,
            connect(srv.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
            connect(srv.url, fleet.workers["w2"], n.inbox_prefix("w2")) as w2,
        ):
            await create_resources(fleet, admin)
            # What w2 has done: two results, a dead letter, a lease held, a day's spend; and
            # a task waiting in its inbox.
            js2 = w2.nc.jetstream()
            t1 = await js2.publish(n.result("w2", "t1"), b'{"secret": 1}', stream=n.results_stream)
            t2 = await js2.publish(n.result("w2", "t2"), b'{"secret": 2}', stream=n.results_stream)
            dead = await js2.publish(n.dead("w2"), b'{"secret": 3}', stream=n.dead_stream)
            cfg = config.load(poller_env("nats://127.0.0.1:1", "w2", tmp_path))
            lease = await Leases(cfg, js2, ttl=30).take("t2", 7)
            assert isinstance(lease, Lease)
            await Budget(js2, bucket, "w2", Limits(5.0, None)).add(0.5)
            counter = await js2.get_msg(spend, subject=f"$KV.{bucket}.worker.w2.{day}", direct=True)
            await publisher.nc.jetstream().publish(n.inbox("w2"), b'{"task_id": "t3"}')

            streams = [n.results_stream, n.dead_stream, leases, spend, n.task_stream]
            before = await _states(admin, streams)
            own_result, own_lease = n.result("w1", "probe"), f"$KV.{n.lease_bucket}.w1.probe"
            own_spend = f"$KV.{bucket}.worker.w1.{day}"

            # Revealed: the last sequence on another worker's subject in the same stream,
            # 0 where it has none, and the latest of several with a wildcard.
            results = n.results_stream
            assert await _probe(w1, own_result, results, n.result("w2", "t1")) == t1.seq
            assert await _probe(w1, own_result, results, n.result("w2", "t2")) == t2.seq
            assert await _probe(w1, own_result, results, n.result("w2", "t9")) == 0
            assert await _probe(w1, own_result, results, n.results_of("w2")) == t2.seq
            assert await _probe(w1, own_result, results, n.results_of("w3")) == 0
            lease_key = f"$KV.{n.lease_bucket}.w2.t2"
            assert await _probe(w1, own_lease, leases, lease_key) == lease.revision
            assert await _probe(w1, own_lease, leases, f"$KV.{n.lease_bucket}.w2.t1") == 0
            their_spend = f"$KV.{bucket}.worker.w2.{day}"
            assert await _probe(w1, own_spend, spend, their_spend) == counter.seq
            assert await _probe(w1, n.dead("w1"), n.dead_stream, n.dead("w2")) == dead.seq

            # Not revealed: anything of another stream (w2's lease seen from a result
            # subject, w2's queued task), and no content: the answer is an error, the
            # stream's name and a zero.
            assert await _probe(w1, own_result, results, lease_key) == 0
            assert await _probe(w1, own_result, results, n.inbox("w2")) == 0
            headers = {EXPECTED_SEQ: str(NEVER), EXPECTED_SUBJECT: n.result("w2", "t1")}
            raw = await w1.nc.request(own_result, b"probe", headers=headers, timeout=5)
            reply = json.loads(raw.data)
            assert reply == {
                "error": {
                    "code": 400,
                    "err_code": 10071,
                    "description": f"wrong last sequence: {t1.seq}",
                },
                "stream": results,
                "seq": 0,
            }
            assert b"secret" not in raw.data and not raw.headers

            # Nor the stream's last Nats-Msg-Id: the fleet's writers of these streams set none.
            for own, stream in ((own_result, results), (own_lease, leases), (own_spend, spend)):
                msg_id = {"Nats-Expected-Last-Msg-Id": "guess"}
                with pytest.raises(nats.js.errors.APIError) as refused:
                    await w1.nc.jetstream().publish(own, b"x", stream=stream, headers=msg_id)
                assert refused.value.description == "wrong last msg ID: "  # none

            # The probes stored nothing, and w1 was refused nothing by its permissions.
            assert await _states(admin, streams) == before
            assert w1.violations() == []
