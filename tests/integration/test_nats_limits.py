"""Store limits on a real broker: a flooding worker hits its bound and the fleet keeps working;
account limits that do not fit the broker's store switch JetStream off, which validate refuses.

Real nats-server, the fleet's own creds and account JWT (limits from the `nats:` block), the
victim is a real poller. docs/security.md cites these tests by name.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from click.testing import CliRunner

from fleetctl.bus.resources import account_limits
from fleetctl.cli.main import cli
from fleetctl.config.schema import NatsSettings
from fleetctl.identity import natsaccess as na
from nsc.claims import JetStreamLimits
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS
from tests.support.natsserver import running_nats_server
from tests.support.nscfleet import Conn, Fleet, connect, create_resources, make_fleet
from tests.support.poller_harness import Poller, directive, poller_env, run, wait_until

pytestmark = pytest.mark.integration
KIB, MIB = 1024, 1024 * 1024
SMALL = NatsSettings(
    tasks_max_bytes=4 * MIB,
    results_max_bytes=2 * MIB,
    dead_max_bytes=2 * MIB,
    leases_max_bytes=1 * MIB,
    spend_max_bytes=1 * MIB,
    records_max_bytes=1 * MIB,
    judgments_max_bytes=1 * MIB,
    cancels_max_bytes=1 * MIB,
    max_msg_size=128 * KIB,
    dead_letters_per_worker=5,
    account_max_file_store=16 * MIB,
    account_max_memory_store=1 * MIB,
)


def _broker_config(fleet: Fleet, limits: JetStreamLimits) -> str:
    a = fleet.authority
    token = a.with_jetstream_limits(a.services_account, limits)
    return a.server_config({a.services_account: token})


async def _api(conn: Conn, subject: str) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads((await conn.nc.request(subject, b"", timeout=5)).data)
    return reply


def test_a_flooding_worker_hits_its_bound_while_the_others_keep_working(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    fleet.settings = SMALL
    n = fleet.names
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "broker").mkdir()
    config = _broker_config(fleet, account_limits(SMALL))
    with running_nats_server(tmp_path / "broker", config, "max_file_store: 64MiB") as server:

        async def go() -> None:
            env = poller_env(server.url, "w2", work, NATS_CREDS=str(fleet.workers["w2"].creds_path))
            victim = Poller(env, work / "poller.log").start()
            try:
                async with (
                    connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin,
                    connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub,
                    connect(server.url, fleet.workers["w1"], n.inbox_prefix("w1")) as flooder,
                ):
                    await create_resources(fleet, admin)
                    pjs = pub.nc.jetstream()
                    await pjs.publish(n.inbox("w2"), b"not json")  # w2 dead-letters it
                    assert await wait_until(lambda: _dead_of(admin, "w2", 1), 20)

                    # The flood: 3x the results stream's bound, then 4x the dead letters kept.
                    fjs = flooder.nc.jetstream()
                    blob = b"x" * (100 * KIB)
                    for i in range(3 * SMALL.results_max_bytes // len(blob)):
                        await fjs.publish(n.result("w1", f"flood-{i}"), blob)
                    for _ in range(4 * SMALL.dead_letters_per_worker):
                        await fjs.publish(n.dead("w1"), blob)
                    with pytest.raises(
                        nats.js.errors.BadRequestError, match="message size exceeds"
                    ):
                        await fjs.publish(n.result("w1", "huge"), b"x" * (200 * KIB))

                    # Its bound: the streams stay within their limits, the account within its.
                    info = await _api(admin, f"$JS.API.STREAM.INFO.{n.results_stream}")
                    assert info["state"]["bytes"] <= SMALL.results_max_bytes
                    assert await _dead_of(admin, "w1", SMALL.dead_letters_per_worker)
                    assert await _dead_of(admin, "w2", 1)  # w2's dead letter is still there
                    account = await _api(admin, "$JS.API.INFO")
                    assert account["storage"] <= SMALL.account_max_file_store

                    # The others keep working: tasks are queued, run, and results stored.
                    task = {"task_id": "after-flood", "instructions": directive(print="ok")}
                    await pjs.publish(n.inbox("w2"), json.dumps(task).encode())
                    await pjs.publish(n.inbox("w1"), b'{"task_id": "queued"}')

                    async def stored() -> bool:
                        try:
                            m = await pjs.get_msg(
                                n.results_stream, subject=n.result("w2", "after-flood")
                            )
                        except nats.js.errors.NotFoundError:
                            return False
                        return bool(json.loads(m.data or b"")["status"] == "completed")

                    assert await wait_until(stored, 20), victim.events()[-5:]
            finally:
                victim.stop()

        run(go())


async def _dead_of(admin: Conn, worker: str, count: int) -> bool:
    """Exactly `count` dead letters of this worker are kept."""
    info = await admin.nc.request(
        "$JS.API.STREAM.INFO.AF_DEAD",
        json.dumps({"subjects_filter": f"af.dead.{worker}"}).encode(),
        timeout=5,
    )
    subjects = json.loads(info.data)["state"].get("subjects") or {}
    return bool(subjects.get(f"af.dead.{worker}", 0) == count)


def test_account_limits_beyond_the_broker_store_turn_jetstream_off(tmp_path: Path) -> None:
    """What `validate` refuses: the same numbers on a real broker leave the fleet's account
    without JetStream (the server logs "insufficient storage resources available")."""
    fleet = make_fleet(tmp_path, ("w1",))
    (tmp_path / "broker").mkdir()
    too_big = JetStreamLimits(mem_storage=MIB, disk_storage=128 * MIB)
    config = _broker_config(fleet, too_big)
    with running_nats_server(tmp_path / "broker", config, "max_file_store: 64MiB") as server:

        async def go() -> None:
            async with connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
                with pytest.raises(nats.errors.NoRespondersError):
                    await admin.nc.request("$JS.API.INFO", b"", timeout=5)

        asyncio.run(go())
        assert "insufficient storage resources" in server.log_tail(200)

    fleet_yaml = tmp_path / "fleet.yaml"
    text = EXAMPLE_FLEET.read_text().replace(
        "nats:\n", "nats:\n  max_file_store: 64MiB\n  account_max_file_store: 128MiB\n", 1
    )
    fleet_yaml.write_text(text)
    (tmp_path / "servers.yaml").write_text(EXAMPLE_SERVERS.read_text())
    args = ["-f", str(fleet_yaml), "-s", str(tmp_path / "servers.yaml"), "validate"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    line = text.splitlines().index("  account_max_file_store: 128MiB") + 1
    assert f"fleet.yaml:{line}:" in result.output
    assert "nats.account_max_file_store: account_max_file_store (128MiB) is more than" in (
        result.output
    )
    assert "insufficient resources" in result.output and "Traceback" not in result.output


def test_changed_account_limits_reach_a_running_broker_on_reload(tmp_path: Path) -> None:
    """apply rewrites nats-server.conf and reloads it (SIGHUP): the account JWT derived from
    the same stored one with other limits is taken, no restart needed."""
    fleet = make_fleet(tmp_path, ("w1",))
    (tmp_path / "broker").mkdir()
    small = JetStreamLimits(mem_storage=MIB, disk_storage=16 * MIB)
    bigger = JetStreamLimits(mem_storage=MIB, disk_storage=32 * MIB)

    async def max_storage(url: str) -> int:
        async with connect(url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
            return int((await _api(admin, "$JS.API.INFO"))["limits"]["max_storage"])

    config = _broker_config(fleet, small)
    with running_nats_server(tmp_path / "broker", config, "max_file_store: 64MiB") as server:
        assert asyncio.run(max_storage(server.url)) == 16 * MIB
        server.extra_config = _broker_config(fleet, bigger)
        server.write_config()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)

        async def reloaded() -> bool:
            try:
                return await max_storage(server.url) == 32 * MIB
            except (OSError, nats.errors.Error):  # a connect while the account is swapped
                return False

        assert run(wait_until(reloaded, 10))
