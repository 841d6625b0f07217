"""Decommissioning a host that left servers.yaml (fleetctl/reconcile/decommission.py), against
a stand-in host (tests/support/fakehosts.py): what is asked of its agent, what counts as
still there, the teardown program sent, and `fleetctl decommission` end to end. A real
host: tests/e2e/test_decommission.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleetctl import layout
from fleetctl.cli.main import cli
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet, Host
from fleetctl.reconcile import decommission, remembered
from fleetctl.reconcile.departed import DepartedHost
from fleetctl.reconcile.facts import parse
from fleetctl.reconcile.remembered import RememberedHost
from fleetctl.reconcile.rollout import HostResult, Reporter
from fleetctl.reconcile.sessions import LOCK_FILE, Options
from fleetctl.transport.base import Transport, TransportError
from tests.support.example import example_fleet_dir
from tests.support.fakehosts import PYTHON, FakeHost, Log

CREDS = "/etc/fleet/creds/old-a.creds"
UNIT_FILE = "/etc/systemd/system/old-a-poller.service"
HOME = "/var/lib/fleet/old-a"
GONE = RememberedHost(
    name="old-node",
    address="192.0.2.99",
    port=2222,
    user="admin",
    roles=("worker-host",),
    host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    applied_at=1_700_000_000,
    revision="r1",
    resources=(
        f"dir {HOME}",
        f"file {CREDS}",
        f"file {UNIT_FILE}",
        "package fleet-poller",
        "unit old-a-poller.service",
        "user fleet-old-a",
    ),
)
OWNED = {"owner": "fleet-old-a", "group": "fleet-old-a"}
# The agent's answer on the old host: everything still there, as its manifest lists it.
FACTS: dict[str, Any] = {
    "python": PYTHON,
    "files": {
        CREDS: {"sha256": "a" * 64, "mode": 0o600, **OWNED},
        UNIT_FILE: {"sha256": "b" * 64, "mode": 0o644, "owner": "root", "group": "root"},
    },
    "dirs": {HOME: {"mode": 0o750, "is_dir": True, **OWNED}},
    "users": {"fleet-old-a": {"home": HOME}},
    "units": {"old-a-poller.service": {"enabled": True, "active": True, "state": "active"}},
    "versions": {"fleet-poller": "0.1.0+abc"},
    "manifest": {"resources": {k: None for k in GONE.resources}, "units": {}},
}
TEARDOWN = (
    "apply",
    "purge_previous",  # the versions it kept live beside what they replaced: they go first
    "systemctl disable --now old-a-poller.service",
    f"remove_file {CREDS}",
    f"remove_file {UNIT_FILE}",
    f"remove_package {layout.POLLER_VENV}",
    f"remove_dir {HOME}",
    "remove_user fleet-old-a",
    f"remove_empty_dir {layout.CREDS_DIR}",
    "remove_empty_dir /etc/fleet",
    "systemctl daemon-reload",
    f"remove_dir {layout.STATE_DIR}",
)


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    example_fleet_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FLEETCTL_")]:
        monkeypatch.delenv(name)
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeHost]:
    """Stand-in hosts by name, connected to instead of over SSH: only where fleetctl last
    applied to them, pinned to the key they presented then."""
    log = Log()
    found = {GONE.name: FakeHost(GONE.name, log, facts=FACTS)}

    def connect(host: Host, options: Options) -> Transport:
        last = remembered.load(example_fleet_here()).get(host.name, GONE)
        assert (host.address, host.port, host.user, host.host_key) == (
            last.address,
            last.port,
            last.user,
            last.host_key,
        )
        if host.name not in found:
            raise TransportError(host.name, "connection refused")
        return found[host.name]

    monkeypatch.setattr(decommission, "connect", connect)
    return found


def example_fleet_here() -> Fleet:
    return load_fleet(Path("fleet.yaml"), Path("servers.yaml"))


def test_reach_asks_for_the_manifest_and_everything_last_applied(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    session = decommission.reach(fleet, GONE, Options(), lock=False)
    [request] = hosts[GONE.name].requests
    assert request == {
        "op": "observe",
        "state_dir": layout.STATE_DIR,
        "files": [CREDS, UNIT_FILE],
        "dirs": [HOME],
        "users": ["fleet-old-a"],
        "units": ["old-a-poller.service"],
        "env_files": [],
        "contents": [],
        "versions": {"fleet-poller": layout.POLLER_VERSION_FILE, "nats-server": layout.NATS_BIN},
        "hashed": ["nats-server"],
        "node": False,
        "repos": [],
        "commands": [],
    }
    assert session.observed == parse(FACTS)
    assert decommission.has_manifest(session)


def test_reach_under_the_lock_observes_through_the_lock(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    session = decommission.reach(fleet, GONE, Options(), lock=True)
    assert hosts[GONE.name].log.of(GONE.name) == [("lock",), ("observe under the lock",)]
    assert session.observed == parse(FACTS)
    session.close()
    assert hosts[GONE.name].log.of(GONE.name)[-1] == ("unlock",)
    assert LOCK_FILE.startswith(layout.STATE_DIR + "/")  # the state dir's removal frees it


def test_a_host_lost_while_observed_is_closed_and_the_error_raised(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    hosts[GONE.name].unreachable = True
    with pytest.raises(TransportError, match="connection lost"):
        decommission.reach(fleet, GONE, Options(), lock=False)
    assert hosts[GONE.name].closed


def test_still_there_is_what_the_manifest_lists_and_the_host_has(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    facts = dict(FACTS, files={CREDS: FACTS["files"][CREDS], UNIT_FILE: None})
    facts["versions"] = {"fleet-poller": None}  # its version file is gone: removed anyway
    observed = parse(facts)
    assert decommission.still_there(GONE, observed) == [
        f"dir {HOME}",
        f"file {CREDS}",
        "package fleet-poller",
        "unit old-a-poller.service",
        "user fleet-old-a",
    ]
    # An unreadable manifest: what fleetctl last applied there, as far as it is there.
    corrupt = parse(dict(facts, manifest={"_corrupt": True}))
    assert decommission.still_there(GONE, corrupt) == decommission.still_there(GONE, observed)
    listed_less = parse(dict(facts, manifest={"resources": {f"file {CREDS}": None}}))
    assert decommission.still_there(GONE, listed_less) == [f"file {CREDS}"]


def test_the_teardown_removes_all_it_owns_then_the_state_dir(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    session = decommission.reach(fleet, GONE, Options(), lock=False)
    plan = decommission.teardown_plan(GONE, session)
    assert sorted(f"{c.action} {c.kind} {c.name}" for c in plan.changes) == sorted(
        f"delete {k}" for k in GONE.resources
    )
    assert plan.notes[-1] == (
        f"then its state directory (manifest, journal, lock) goes, and fleetctl forgets {GONE.name}"
    )
    finished: list[HostResult] = []

    class Heard(Reporter):
        def finished(self, result: HostResult) -> None:
            finished.append(result)

    result = decommission.run(session, plan, Heard())
    assert result == HostResult(GONE.name, True, steps=len(TEARDOWN) - 1)
    assert finished == [result]
    assert hosts[GONE.name].log.of(GONE.name) == [("observe",), TEARDOWN]


def test_a_failed_teardown_step_is_the_result_with_its_label(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    hosts[GONE.name].fail_step = 6
    hosts[GONE.name].fail_error = "userdel exited 8: user fleet-old-a is currently used"
    session = decommission.reach(fleet, GONE, Options(), lock=False)
    result = decommission.run(session, decommission.teardown_plan(GONE, session), Reporter())
    assert result == HostResult(
        GONE.name,
        False,
        steps=0,
        failed_step="remove user fleet-old-a",
        error="userdel exited 8: user fleet-old-a is currently used",
    )


def test_live_reads_each_departed_host_or_says_why_it_could_not(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    unreached = RememberedHost(
        **{**GONE.__dict__, "name": "older-node", "address": "192.0.2.98", "port": 22}
        | {"user": "root", "host_key": None}
    )
    remembered.remember(fleet, [GONE, unreached])
    facts = dict(FACTS, files={CREDS: None, UNIT_FILE: FACTS["files"][UNIT_FILE]})
    hosts[GONE.name].facts = facts
    found = decommission.live(fleet, Options())
    assert found == (
        DepartedHost(
            GONE.name,
            GONE.address,
            GONE.roles,
            GONE.applied,
            tuple(k for k in sorted(GONE.resources) if k != f"file {CREDS}"),
            "manifest",
        ),
        DepartedHost(
            "older-node",
            "192.0.2.98",
            GONE.roles,
            GONE.applied,
            tuple(sorted(GONE.resources)),
            "last apply",
            "connection refused",
        ),
    )
    assert hosts[GONE.name].closed  # read only: not kept open


def test_decommission_removes_everything_then_forgets_the_host(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    remembered.remember(fleet, [GONE])
    result = CliRunner().invoke(cli, ["decommission", GONE.name, "--yes"], prog_name="fleetctl")
    assert result.exit_code == 0, result.output
    assert hosts[GONE.name].log.of(GONE.name) == [
        ("lock",),
        ("observe under the lock",),
        TEARDOWN,
        ("unlock",),
    ]
    assert f"Decommissioned {GONE.name}: nothing fleetctl put there is left." in result.output
    assert remembered.load(fleet) == {}


def test_a_decommission_that_fails_keeps_the_host_remembered(
    fleet: Fleet, hosts: dict[str, FakeHost]
) -> None:
    remembered.remember(fleet, [GONE])
    hosts[GONE.name].fail_step = 1
    result = CliRunner().invoke(cli, ["decommission", GONE.name, "--yes"], prog_name="fleetctl")
    assert result.exit_code == 1
    assert f"{GONE.name} is not fully decommissioned; fleetctl still remembers it." in (
        " ".join(result.output.split())
    )
    assert remembered.load(fleet) == {GONE.name: GONE}
