"""The `nats:` block's store limits: in every stream declaration, in the account JWT the
broker gets, and a plan warning for a stream near its limit (a pure function)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fleetctl.bus.resources import account_limits, near_limit_warning, streams
from fleetctl.config.schema import NatsSettings
from fleetctl.identity import credentials
from nsc import jwt
from tests.support.example import example_fleet

GIB, MIB = 1024**3, 1024**2


def test_every_stream_declares_its_bounds() -> None:
    got = {
        s.name: {k: s.api_config()[k] for k in ("max_bytes", "max_msg_size", "discard")}
        | {"per_subject": s.api_config()["max_msgs_per_subject"]}
        for s in streams(NatsSettings())
    }
    assert got == {
        "AF_TASKS": {"max_bytes": GIB, "max_msg_size": MIB, "discard": "new", "per_subject": -1},
        "AF_RESULTS": {"max_bytes": GIB, "max_msg_size": MIB, "discard": "old", "per_subject": 1},
        "AF_DEAD": {
            "max_bytes": 256 * MIB,
            "max_msg_size": MIB,
            "discard": "old",
            "per_subject": 1000,
        },
        # a lease is a few hundred bytes; a flood of one worker's keys drops the oldest
        "KV_AF_LEASES": {
            "max_bytes": 64 * MIB,
            "max_msg_size": 4096,
            "discard": "old",
            "per_subject": 1,
        },
        "KV_AF_SPEND": {
            "max_bytes": 16 * MIB,
            "max_msg_size": 4096,
            "discard": "old",
            "per_subject": 1,
        },
        # one record per task id, rewritten when the id is sent again
        "KV_AF_RECORDS": {
            "max_bytes": 64 * MIB,
            "max_msg_size": MIB,
            "discard": "old",
            "per_subject": 1,
        },
        # one judgment per task and worker: a pick or pass/fail and a short comment
        "KV_AF_JUDGMENTS": {
            "max_bytes": 16 * MIB,
            "max_msg_size": 4096,
            "discard": "old",
            "per_subject": 1,
        },
        # one mark per (worker, task) cancelled
        "KV_AF_CANCELS": {
            "max_bytes": 16 * MIB,
            "max_msg_size": 4096,
            "discard": "old",
            "per_subject": 1,
        },
    }
    small = NatsSettings(results_max_bytes=8 * MIB, max_msg_size=64 * 1024)
    results = {s.name: s.api_config() for s in streams(small)}["AF_RESULTS"]
    assert (results["max_bytes"], results["max_msg_size"]) == (8 * MIB, 64 * 1024)


def test_the_broker_gets_the_account_limits_of_fleet_yaml() -> None:
    fleet = example_fleet()
    authority, _ = credentials.init(fleet)
    token = credentials.services_account_jwt(fleet, authority)
    limits = jwt.decode(token).claims["nats"]["limits"]
    assert (limits["disk_storage"], limits["mem_storage"]) == (4 * GIB, 64 * MIB)
    assert limits["subs"] == -1  # the rest of the account's limits are kept
    # derived, not stored: the same inputs give the same JWT (a plan shows what apply sends)
    assert credentials.services_account_jwt(fleet, authority) == token
    assert token in credentials.server_config(fleet, authority)
    assert token in credentials.plan_inputs(fleet).auth_config  # type: ignore[operator]
    # a JWT that already has them is left alone; other limits give another JWT
    assert credentials.services_account_jwt(fleet, authority, token) == token
    bigger = dataclasses.replace(
        fleet, nats=NatsSettings(account_max_file_store=5 * GIB, max_file_store=10 * GIB)
    )
    other = credentials.services_account_jwt(bigger, authority)
    assert other != token
    assert jwt.decode(other).claims["nats"]["limits"]["disk_storage"] == 5 * GIB
    assert jwt.decode(other).claims["iat"] == jwt.decode(token).claims["iat"]


def test_account_limits_follow_the_settings() -> None:
    limits = account_limits(NatsSettings(account_max_file_store=3 * GIB))
    assert (limits.disk_storage, limits.mem_storage, limits.enabled) == (3 * GIB, 64 * MIB, True)


def test_near_limit_warning() -> None:
    def info(used: int, limit: int = 100, discard: str = "old") -> dict[str, object]:
        return {
            "config": {"name": "AF_RESULTS", "max_bytes": limit, "discard": discard},
            "state": {"bytes": used, "messages": 3},
        }

    assert near_limit_warning(info(79)) is None
    assert near_limit_warning(info(99, limit=-1)) is None  # unbounded: nothing to say
    assert near_limit_warning(info(80)) == (
        "stream AF_RESULTS is at 80% of its max bytes (80 of 100); once full it drops its oldest"
    )
    tasks = near_limit_warning(info(100, discard="new"))
    assert tasks is not None and tasks.endswith("once full it refuses new messages")
    by_count = {"config": {"name": "S", "max_msgs": 10}, "state": {"bytes": 1, "messages": 9}}
    assert near_limit_warning(by_count) == (
        "stream S is at 90% of its max messages (9 of 10); once full it drops its oldest"
    )


def test_validate_refuses_limits_that_do_not_nest(tmp_path: Path) -> None:
    """Every problem at once, each at the key written, with the fix; never a traceback."""
    from click.testing import CliRunner

    from fleetctl.cli.main import cli
    from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS

    block = (
        "nats:\n  max_memory_store: 32MiB\n  account_max_memory_store: 64MiB\n"
        "  account_max_file_store: 2GiB\n  results_max_bytes: 2GiB\n"
    )
    text = EXAMPLE_FLEET.read_text().replace("nats:\n", block, 1)
    (tmp_path / "fleet.yaml").write_text(text)
    (tmp_path / "servers.yaml").write_text(EXAMPLE_SERVERS.read_text())
    args = ["-f", str(tmp_path / "fleet.yaml"), "-s", str(tmp_path / "servers.yaml"), "validate"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = text.splitlines()
    memory = lines.index("  account_max_memory_store: 64MiB") + 1
    out = result.output
    assert (
        f"fleet.yaml:{memory}:29: nats.account_max_memory_store: account_max_memory_store "
        "(64MiB) is more than the broker's max_memory_store (32MiB)"
    ) in out
    assert "(lower account_max_memory_store or raise max_memory_store)" in out
    account = lines.index("  account_max_file_store: 2GiB") + 1
    assert (
        f"fleet.yaml:{account}:27: nats.account_max_file_store: the streams' max bytes add up "
        "to 3504MiB (tasks_max_bytes + results_max_bytes + dead_max_bytes + leases_max_bytes + "
        "spend_max_bytes + records_max_bytes + judgments_max_bytes + cancels_max_bytes), more than "
        "account_max_file_store (2GiB)"
    ) in out
    assert "2 problems found" in out
