"""What `status --check` calls a problem, from a status already read (pure logic)."""

from __future__ import annotations

import dataclasses
import time

from fleetctl.status import report as fs
from fleetctl.status.lastlook import count_new_dead
from poller import spend
from tests.support.example import example_fleet

NOW = 1_800_000_000.0


def _status() -> fs.FleetStatus:
    workers = fs.workers_of(example_fleet())
    for w in workers:
        w.deployed, w.consumer = True, {"num_pending": 0}
        w.beat, w.beat_at = {"ts": NOW - 1, "state": "running", "current_tasks": []}, NOW - 1
    broker = fs.BrokerStatus(reachable=True, dead_last_seq=7, dead_letters=3)
    return fs.FleetStatus(workers, [fs.HostStatus("worker-node-1", True, units={})], broker)


def test_a_healthy_fleet_has_no_problems() -> None:
    status = _status()
    count_new_dead(status.broker, 7)
    assert status.problems(example_fleet(), NOW) == []


def test_each_kind_of_trouble_is_one_line() -> None:
    fleet = example_fleet()
    status = _status()
    by_id = {w.worker_id: w for w in status.workers}
    by_id["cmd-wordcount-01"].beat = None
    by_id["cmd-keywords-01"].consumer = {"num_pending": 6}
    by_id["cc-go-dev-01"].creds_expires_at = int(NOW + 2 * 86400)
    by_id["cc-haiku-multi-01"].creds_expires_at = int(NOW - 1)  # disabled: not a problem
    status.hosts = [
        fs.HostStatus("worker-node-1", True, units={"a-poller.service": "failed: boom"}),
        fs.HostStatus("worker-node-2", False, "unreachable: timed out"),
    ]
    count_new_dead(status.broker, 5)
    assert status.problems(fleet, NOW) == [
        "host worker-node-1: a-poller.service failed: boom",
        "host worker-node-2: not reachable (unreachable: timed out)",
        "worker cc-go-dev-01: credentials expire in 2.0 days (fleetctl creds rotate)",
        "worker cmd-wordcount-01: not heartbeating",
        "worker cmd-keywords-01: 6 tasks queued (status.max_lag 5)",
        "broker: 2 new dead letter(s) since the last look (fleetctl dead list)",
    ]


def test_tasks_queued_for_a_worker_that_is_not_running_need_a_human() -> None:
    status = _status()
    count_new_dead(status.broker, 7)
    by_id = {w.worker_id: w for w in status.workers}
    missing = by_id["cc-go-dev-01"]  # a local fleet could not start it: no CLI here
    missing.started_here, missing.deployed, missing.beat = False, False, None
    missing.consumer = {"num_pending": 1}
    gone = by_id["cmd-wordcount-01"]  # deployed, its poller gone
    gone.beat, gone.consumer = None, {"num_pending": 2}
    idle = by_id["cmd-keywords-01"]  # not running, nothing queued: not a problem
    idle.started_here, idle.deployed, idle.beat = False, False, None
    assert status.problems(example_fleet(), NOW) == [
        "worker cc-go-dev-01: 1 task queued, but it is not running (not started by fleetctl up)",
        "worker cmd-wordcount-01: not heartbeating",
        "worker cmd-wordcount-01: 2 tasks queued, but it is not running (not heartbeating)",
    ]


def test_the_first_look_counts_every_dead_letter_kept() -> None:
    broker = dataclasses.replace(_status().broker)
    count_new_dead(broker, None)
    assert broker.new_dead_letters == 3


def test_a_corrupt_or_reset_spend_counter_needs_a_human() -> None:
    status = _status()
    count_new_dead(status.broker, 7)
    worker = status.workers[0]
    worker.spend_problem = spend.parse(b'{"usd": NaN}').problem
    status.broker.fleet_spend_problem = spend.parse(
        spend.encode(5.0, NOW, spend.reset_marker("usd is negative", "w2"))
    ).problem
    day = time.strftime("%Y-%m-%d", time.gmtime(NOW))
    assert status.problems(example_fleet(), NOW) == [
        f"worker {worker.worker_id}: spend counter worker.{worker.worker_id}.{day} is corrupt "
        "(usd is NaN): the budget counts as spent for the rest of the UTC day "
        "(docs/security.md)",
        f"broker: the fleet's spend counter fleet.{day} was reset to its limit by worker w2 "
        "after it was found corrupt (usd is negative): the budget counts as spent for the rest "
        "of the UTC day (docs/security.md)",
    ]


def test_a_host_below_the_free_space_floor_needs_a_human_and_shows_its_disk_use() -> None:
    status = _status()
    count_new_dead(status.broker, 7)
    used = {"/var/lib/fleet/repos": 300 * 1024**2, "/var/lib/fleet/w1/worktrees": None}
    plenty = fs.RepoDisk(used, 5 * 1024**3, 1024**3)
    status.hosts = [fs.HostStatus("worker-node-1", True, repos=plenty)]
    assert status.problems(example_fleet(), NOW) == []
    assert status.hosts[0].as_json()["repos"] == {
        "used_bytes": 300 * 1024**2,
        "free_bytes": 5 * 1024**3,
        "floor_bytes": 1024**3,
        "paths": [
            {"path": "/var/lib/fleet/repos", "bytes": 300 * 1024**2},
            {"path": "/var/lib/fleet/w1/worktrees", "bytes": None},
        ],
    }
    low = fs.RepoDisk(used, 512 * 1024**2, 1024**3)
    status.hosts = [fs.HostStatus("worker-node-1", True, repos=low)]
    assert status.problems(example_fleet(), NOW) == [
        "host worker-node-1: 0.50 GiB free for the repositories, below the 1.00 GiB floor: its "
        "workers refuse new worktrees (free disk space; finished worktrees go after `retain`)"
    ]


def test_a_cluster_broker_down_or_a_copy_lagging_needs_a_human() -> None:
    """Each broker down once (not again for every copy it holds that is not current), one
    unhealthy, and a copy behind by more than status.max_replica_lag, on a running broker
    or on one that does not answer (frozen: its leaders count how far it fell behind)."""
    status = _status()
    count_new_dead(status.broker, 7)
    status.broker.meta_leader = "broker-1"
    status.broker.servers = [
        fs.ServerStatus("broker-1", True, "2.15.1", ["broker-2"], True),
        fs.ServerStatus("broker-2", True, "2.15.1", ["broker-1"], False, "JetStream not current"),
        fs.ServerStatus("broker-3"),
    ]

    def copies(lag_on_2: int) -> dict[str, object]:
        return {
            "leader": "broker-1",
            "replicas": [
                {"name": "broker-2", "current": True, "lag": lag_on_2},
                {"name": "broker-3", "current": False, "lag": 0},
            ],
        }

    frozen = {
        "leader": "broker-1",
        "replicas": [
            {"name": "broker-2", "current": True, "lag": 0},
            {"name": "broker-3", "current": False, "lag": 1200},
        ],
    }
    status.broker.streams = {"AF_TASKS": copies(1500), "AF_RESULTS": copies(3), "AF_DEAD": frozen}
    assert status.problems(example_fleet(), NOW) == [
        "broker broker-2: not healthy (JetStream not current)",
        "broker broker-3: down (it does not answer)",
        "stream AF_DEAD: its copy on broker-3 (down) is 1200 operations behind its leader "
        "broker-1 (status.max_replica_lag 1000)",
        "stream AF_TASKS: its copy on broker-2 is 1500 operations behind its leader broker-1 "
        "(status.max_replica_lag 1000)",
    ]
    status.broker.servers[1].healthy, status.broker.servers[2].up = True, True
    status.broker.servers[2].healthy = True
    healthy = copies(0)
    healthy["replicas"] = [{"name": b, "current": True, "lag": 0} for b in ("broker-2", "broker-3")]
    status.broker.streams = {"AF_TASKS": healthy}
    assert status.problems(example_fleet(), NOW) == []
    status.broker.meta_leader = None
    assert status.problems(example_fleet(), NOW) == [
        "cluster: no JetStream meta leader (fewer than a majority of brokers up?)"
    ]
