"""The poller, as deployed: operator-mode broker config and worker creds from fleetctl.

Nothing hand-typed: the server runs `Authority.server_config()`, the poller connects with the
.creds that `fleetctl.identity.natsaccess` issued, streams and consumers come from natsresources
(created by the admin user), tasks from the publisher user.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetctl.identity import natsaccess as na
from tests.support.nscfleet import connect, create_resources, fleet_server, make_fleet
from tests.support.poller_harness import Poller, poller_env, run, wait_until

pytestmark = pytest.mark.integration


def test_poller_runs_tasks_with_its_least_privilege_creds(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1",))
    work = tmp_path / "work"
    work.mkdir()
    with fleet_server(fleet) as server:

        async def go() -> None:
            n = fleet.names
            async with connect(server.url, fleet.admin, na.ADMIN_INBOX_PREFIX) as admin:
                await create_resources(fleet, admin)
            env = poller_env(server.url, "w1", work, NATS_CREDS=str(fleet.workers["w1"].creds_path))
            poller = Poller(env, work / "poller.log").start()
            try:
                async with connect(server.url, fleet.publisher, na.PUBLISHER_INBOX_PREFIX) as pub:
                    js = pub.nc.jetstream()
                    task = {"task_id": "t1", "instructions": "hello"}
                    await js.publish(
                        n.inbox("w1"), json.dumps(task).encode(), headers={"Nats-Msg-Id": "t1"}
                    )

                    async def stored() -> bool:
                        try:
                            await js.get_msg(n.results_stream, subject=n.result("w1", "t1"))
                            return True
                        except Exception:
                            return False

                    assert await wait_until(stored, 20), poller.events()[-5:]
                    msg = await js.get_msg(n.results_stream, subject=n.result("w1", "t1"))
                    result = json.loads(msg.data or b"{}")
                    assert result["status"] == "completed" and result["worker_id"] == "w1"
                    # redelivered after its result is stored: acked without running again
                    await js.publish(n.inbox("w1"), json.dumps(task).encode())
                    assert await wait_until(lambda: bool(poller.logged("already_done")), 15)
            finally:
                poller.stop()
            violations = [e for e in poller.events() if e.get("event") == "nats_error"]
            assert violations == [], violations

        run(go())
