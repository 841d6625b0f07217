"""Cancel marks on a real broker with the fleet's real creds (docs/messages.md, "Cancel mark";
docs/security.md): the publisher writes and reads them and deletes nothing from the task
stream; a worker reads and watches its own marks and writes none; admin only manages the
bucket. The cancel itself, end to end: tests/integration/test_new_user_path.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats.errors
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

pytestmark = pytest.mark.integration
TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)


async def _refused(conn: Conn, subject: str, body: bytes = b"{}") -> None:
    with pytest.raises(TIMEOUTS):
        await conn.nc.request(subject, body, timeout=DENIED_TIMEOUT)
    await conn.wait_violation(subject)


def test_only_the_publisher_writes_cancel_marks_and_only_their_worker_reads_them(
    tmp_path: Path,
) -> None:
    asyncio.run(_mark_permissions(tmp_path))


async def _mark_permissions(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    n = fleet.names
    stream, mine, theirs = n.cancel_stream, n.cancel("w1", "t1"), n.cancel("w2", "t1")
    with fleet_server(fleet) as srv:
        async with (
            connect(srv.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
            connect(srv.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
            connect(srv.url, fleet.workers["w1"], n.inbox_prefix("w1")) as w1,
        ):
            await create_resources(fleet, admin)
            seen: asyncio.Queue[str] = asyncio.Queue()

            async def on_mark(msg: object) -> None:
                await seen.put(str(getattr(msg, "subject", "")))

            await w1.nc.subscribe(n.cancel("w1", "*"), cb=on_mark)
            await w1.nc.flush()

            # the publisher writes a mark (compare-and-set on no key) and reads it back
            mark = b'{"version": 1, "task_id": "t1"}'
            for key in (mine, theirs):
                ack = await pub.nc.request(
                    key, mark, timeout=5, headers={"Nats-Expected-Last-Subject-Sequence": "0"}
                )
                assert "seq" in json.loads(ack.data), ack.data
            got = await pub.nc.request(f"$JS.API.DIRECT.GET.{stream}.{mine}", b"", timeout=5)
            assert got.data == mark
            # ... and w1 sees its own as it is written, not w2's
            try:
                assert await asyncio.wait_for(seen.get(), 5) == mine
            except TimeoutError:  # seen once in a full run: say what w1's connection heard
                raise AssertionError(f"w1 never saw its mark; its errors: {w1.errors}") from None
            # the publisher deletes nothing: not a queued task, not a mark
            await _refused(pub, f"$JS.API.STREAM.MSG.DELETE.{n.task_stream}", b'{"seq": 1}')
            await _refused(pub, f"$JS.API.STREAM.PURGE.{n.task_stream}")
            await _refused(pub, f"$JS.API.STREAM.PURGE.{stream}")
            await _refused(pub, f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq": 1}')

            # w1 reads its own mark by subject; not w2's, not by batch; writes none
            got = await w1.nc.request(f"$JS.API.DIRECT.GET.{stream}.{mine}", b"", timeout=5)
            assert got.data == mark
            await _refused(w1, f"$JS.API.DIRECT.GET.{stream}.{theirs}", b"")
            batch = json.dumps({"seq": 1, "next_by_subj": n.all_cancels, "batch": 10}).encode()
            await _refused(w1, f"$JS.API.DIRECT.GET.{stream}", batch)
            await _refused(w1, f"$JS.API.STREAM.INFO.{stream}")
            await w1.nc.publish(n.cancel("w1", "t2"), b"x")  # not even a mark of its own
            await w1.wait_violation(n.cancel("w1", "t2"))
            await w1.nc.publish(theirs, b"x")
            await w1.wait_violation(theirs)
            await w1.nc.subscribe(n.cancel("w2", "*"))
            await w1.wait_violation(n.cancel("w2", "*"))

            # admin manages the bucket, reads and writes no mark
            info = await admin.nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
            assert json.loads(info.data)["state"]["messages"] == 2
            await _refused(admin, f"$JS.API.DIRECT.GET.{stream}.{mine}", b"")
            await admin.nc.publish(mine, b"x")
            await admin.wait_violation(mine)

            # nothing but the publisher's two writes is stored
            info = await admin.nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
            assert json.loads(info.data)["state"]["messages"] == 2
