"""`fleetctl rollback` against stand-in hosts (tests/support/fakehosts.py): the plan it shows
is what each host keeps (its agent's `previous`, as plan changes), and rolling back sends
each host with something kept exactly one restore (only the asked workers' part with
--worker), broker hosts first. No SSH, no root; the bus is not reachable here, so nothing is
asked of it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fleetctl.config.model import Host
from fleetctl.reconcile import observation, rollback
from fleetctl.reconcile.hostapply import HostResult, Reporter, Settings
from fleetctl.reconcile.kept import KeptVersion, going_back, parse_kept
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.sessions import Options
from fleetctl.transport.base import Transport
from tests.support.driftedfleet import BROKER, NODE1, NODE2, RESTORE, observed_stand_ins
from tests.support.example import example_fleet
from tests.support.fakehosts import FakeHost, Log
from tests.support.natsserver import free_port

UNIT = "cmd-keywords-01-poller.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
KEPT: dict[str, Any] = {
    "format": 1,
    "generations": [
        {
            "id": "g1",
            "state": "confirmed",
            "revision": "ab12cd34ef56ab12cd34",
            "applied_at": 1_800_000_000,
            "applied_by": "fleetctl apply --all",
            "owners": {f"path {UNIT_FILE}": "cmd-keywords-01", f"unit {UNIT}": "cmd-keywords-01"},
            "entries": [
                {"path": "/var/lib/fleetctl/journal.json", "was": "absent"},
                {"path": UNIT_FILE, "was": "file", "stash": f"/etc/systemd/system/.{UNIT}.x"},
                {"path": "/opt/fleet/venv", "was": "link", "target": "venv-0.1.0_abc123"},
                {"unit": UNIT, "active": True, "enabled": True, "actions": ["restart"]},
                {"unit": "new-poller.service", "active": False, "enabled": False,
                 "actions": ["enable"]},
                {"path": "/var/lib/fleet/new", "was": "absent", "dir": True},
                {"user": "fleet-new", "home": None},
            ],
        }
    ],
}  # fmt: skip


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeHost]:
    """The example fleet's hosts as right after an apply; worker-node-2 keeps `KEPT`."""
    found = observed_stand_ins(Log(), bus_port=free_port())
    found[NODE2].facts = {**found[NODE2].facts, "previous": KEPT}

    def connect(host: Host, options: Options) -> Transport:
        return found[host.name]

    monkeypatch.setattr(observation, "connect", connect)
    return found


def shown(pending: rollback.Pending) -> dict[str, list[tuple[str, str, str, str | None]]]:
    return {
        h.name: [(c.symbol, c.kind, c.name, c.unit_action) for c in h.changes]
        for h in pending.plan.hosts
    }


def test_the_plan_shows_what_each_host_goes_back_to(hosts: dict[str, FakeHost]) -> None:
    pending = rollback.plan(example_fleet(), Selection(), Options())
    try:
        assert shown(pending) == {
            BROKER: [],
            NODE1: [],
            NODE2: [
                ("-", "file", "/var/lib/fleetctl/journal.json", None),
                ("~", "file", UNIT_FILE, None),
                ("~", "package", "fleet-poller", None),
                ("~", "unit", UNIT, "restart"),
                ("-", "unit", "new-poller.service", "stop"),
                ("-", "dir", "/var/lib/fleet/new", None),
                ("-", "user", "fleet-new", None),
            ],
        }
        node2 = next(h for h in pending.plan.hosts if h.name == NODE2)
        assert node2.notes == (
            "back to the version before the one applied 2027-01-15 08:00 UTC by "
            "fleetctl apply --all (revision ab12cd34ef56)",
        )
        package = next(c for c in node2.changes if c.kind == "package")
        assert package.attrs == (("version", "0.1.0+abc123"),)
        assert [h.notes for h in pending.plan.hosts if h.name != NODE2] == [
            (rollback.NOTHING_KEPT,),
            (rollback.NOTHING_KEPT,),
        ]
        assert not pending.empty
    finally:
        pending.close()


def test_rolling_back_sends_one_restore_to_each_host_that_keeps_a_version(
    hosts: dict[str, FakeHost],
) -> None:
    pending = rollback.plan(example_fleet(), Selection(), Options())
    finished: list[HostResult] = []

    class Heard(Reporter):
        def finished(self, result: HostResult) -> None:
            finished.append(result)

    try:
        results = rollback.roll_back(pending, Heard(), Settings(None))
    finally:
        pending.close()
    assert [(r.name, r.ok, r.rolled_back) for r in results] == [(NODE2, True, True)]
    assert finished == results
    assert [op for op in hosts[NODE2].log.of(NODE2) if op[0] == "apply"] == [RESTORE]
    assert hosts[NODE2].requests[-1]["steps"] == [
        {"op": "restore_previous", "log": "/var/lib/fleetctl/previous.json", "id": None}
    ]
    assert not any(op[0] == "apply" for h in (BROKER, NODE1) for op in hosts[h].log.of(h))


def test_with_worker_only_that_workers_part_goes_back(
    hosts: dict[str, FakeHost],
) -> None:
    selection = Selection(
        workers=frozenset({"cmd-keywords-01"}), worker_hosts=frozenset({NODE2}),
        homes=frozenset({NODE2}),
    )  # fmt: skip
    pending = rollback.plan(example_fleet(), selection, Options(), ["cmd-keywords-01"])
    try:
        assert shown(pending)[NODE2] == [
            ("~", "file", UNIT_FILE, None),
            ("~", "unit", UNIT, "restart"),
        ]
        rollback.roll_back(pending, Reporter(), Settings(None))
    finally:
        pending.close()
    assert hosts[NODE2].requests[-1]["steps"][0]["workers"] == ["cmd-keywords-01"]


def test_a_host_that_keeps_nothing_has_nothing_to_roll_back(
    hosts: dict[str, FakeHost],
) -> None:
    hosts[NODE2].facts = {k: v for k, v in hosts[NODE2].facts.items() if k != "previous"}
    pending = rollback.plan(example_fleet(), Selection(), Options())
    try:
        assert pending.empty
    finally:
        pending.close()


@pytest.mark.parametrize(
    ("raw", "newest"),
    [
        (None, None),
        ({"generations": "no"}, None),
        ({"_corrupt": True}, None),
        (KEPT, "g1"),
    ],
)
def test_what_a_host_keeps_is_read_leniently(raw: object, newest: str | None) -> None:
    kept = parse_kept(raw)
    assert (kept.newest.generation if kept.newest else None) == newest


def test_a_unit_stopped_by_the_apply_starts_again_and_a_reloaded_one_reloads() -> None:
    version = KeptVersion(
        "g",
        "confirmed",
        entries=(
            {"unit": "a.service", "active": True, "enabled": True, "actions": ["disable"]},
            {"unit": "b.service", "active": True, "enabled": True, "actions": ["reload"]},
        ),
    )
    assert [(c.symbol, c.name, c.unit_action) for c in going_back(version)] == [
        ("+", "a.service", "start"),
        ("~", "b.service", "reload"),
    ]


def test_the_plan_says_when_a_host_rolled_back_by_itself_or_waits_for_a_confirmation() -> None:
    from fleetctl.reconcile.desired.build import desired_state
    from fleetctl.reconcile.plan.hosts import UNCONFIRMED, diff_host
    from tests.support.driftedfleet import INPUTS
    from tests.support.fakehosts import converged

    state = desired_state(example_fleet(), INPUTS).hosts[NODE1]
    gone = {"id": "g2", "at": 1_800_000_060, "why": "not confirmed within 120 s"}
    armed = {**KEPT["generations"][0], "state": "armed"}
    observed = converged(state)
    itself = "rolled back by itself at 2027-01-15 08:01 UTC: not confirmed within 120 s"
    for raw, note in [
        ({"generations": [], "rolled_back": gone}, itself),
        ({"generations": [armed]}, UNCONFIRMED),
    ]:
        seen = dataclasses.replace(observed, kept=parse_kept(raw))
        assert diff_host(state, seen, Selection(), live=True).notes == (note,)
    assert diff_host(state, observed, Selection(), live=True).notes == ()
