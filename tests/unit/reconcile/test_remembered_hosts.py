"""fleetctl's memory of the hosts it applied to, and what the plan and `decommission` do with
a remembered host that left servers.yaml, without a host to reach (the e2e test,
tests/e2e/test_decommission.py, reaches one)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetctl.cli.main import cli
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.reconcile import apply as use_case
from fleetctl.reconcile import remembered
from fleetctl.reconcile.departed import as_last_applied, what_is_there
from fleetctl.reconcile.plan.types import Plan
from fleetctl.reconcile.remembered import RememberedHost
from fleetctl.reconcile.rollout import HostResult
from fleetctl.ui.plan_view import summary_line
from tests.support.example import example_fleet_dir

GONE = RememberedHost(
    name="old-node",
    address="127.0.0.2",  # nothing listens on port 1 there: refused at once
    port=1,
    user="root",
    roles=("worker-host",),
    host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    applied_at=1_700_000_000,
    revision="r1",
    resources=(
        "dir /var/lib/fleet/old-a",
        "file /etc/fleet/creds/old-a.creds",
        "file /etc/systemd/system/old-a-poller.service",
        "package fleet-poller",
        "unit old-a-poller.service",
        "user fleet-old-a",
    ),
)


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    example_fleet_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FLEETCTL_")]:
        monkeypatch.delenv(name)
    return load_fleet(tmp_path / "fleet.yaml", tmp_path / "servers.yaml")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="fleetctl", catch_exceptions=False)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_the_memory_is_one_private_file_per_operator_beside_the_store(fleet: Fleet) -> None:
    remembered.remember(fleet, [GONE])
    path = remembered.path(fleet)
    assert path == Path("nsc/stores/fleetctl-hosts.fleet.json").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert remembered.load(fleet) == {"old-node": GONE}
    remembered.forget(fleet, "old-node")
    assert remembered.load(fleet) == {}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]


def test_a_damaged_memory_is_an_error_naming_the_file_and_the_fix(fleet: Fleet) -> None:
    path = remembered.path(fleet)
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "hosts": {"x": {"address": 3}}}')
    code, text = run("plan", "--dry-run")
    assert code == 1
    assert f"error: {path}: host 'x': `address` is not a str (move it aside:" in text
    path.write_text("{not json")
    code, text = run("decommission", "old-node")
    assert code == 1 and "is not valid JSON" in text and "Traceback" not in text


def test_the_offline_plan_warns_about_a_host_that_left_with_what_was_applied(
    fleet: Fleet,
) -> None:
    remembered.remember(fleet, [GONE])
    code, text = run("plan", "--dry-run")
    assert code == 0, text
    assert "Warning: old-node left servers.yaml, but what fleetctl put there" in text
    assert "old-node  127.0.0.2  (worker-host)  left servers.yaml" in text
    assert (
        "still there (as applied 2023-11-14 22:13 UTC): unit old-a-poller.service; "
        "user fleet-old-a; package fleet-poller; 1 dir; 2 files"
    ) in text
    [gone] = json.loads(run("plan", "--dry-run", "--json")[1])["departed"]
    assert gone["source"] == "last apply" and gone["resources"] == list(GONE.resources)
    code, text = run("plan", "--dry-run", "--host", "worker-node-1")
    assert "old-node" not in text  # a narrowed plan is about the hosts it names


def test_a_departed_host_with_things_on_it_counts_as_changes_pending() -> None:
    plan = Plan("live", "r", ())
    assert not plan.pending
    assert summary_line(plan) == "No changes. The fleet matches its configuration."
    plan = Plan("live", "r", (), departed=(as_last_applied(GONE),))
    assert plan.pending
    assert summary_line(plan) == (
        "No changes to the fleet; 1 host(s) that left servers.yaml to decommission: old-node."
    )
    emptied = as_last_applied(RememberedHost(**{**GONE.__dict__, "resources": ()}))
    assert not Plan("live", "r", (), departed=(emptied,)).pending


def test_what_is_there_names_few_and_counts_many_and_escapes_odd_names() -> None:
    keys = ["unit a.service", "unit b.service", "file /x", "file /y", "user u\x1b[2J"]
    assert what_is_there(keys) == "units a.service, b.service; user 'u\\x1b[2J'; 2 files"


def test_decommission_of_an_unknown_host_has_nothing_to_do(fleet: Fleet) -> None:
    remembered.remember(fleet, [GONE])
    code, text = run("decommission", "no-such-host")
    assert code == 0
    assert "Nothing to do: fleetctl remembers no host 'no-such-host'" in text
    assert "Hosts that left servers.yaml: old-node." in text


def test_decommission_refuses_a_host_still_in_servers_yaml(fleet: Fleet) -> None:
    code, text = run("decommission", "worker-node-1", "--yes")
    assert code == 1
    assert "error: 'worker-node-1' is still in servers.yaml (remove it there" in text


def test_an_unreachable_host_is_left_alone_and_remembered(fleet: Fleet) -> None:
    remembered.remember(fleet, [GONE])
    code, text = run("decommission", "old-node", "--yes")
    assert code == 1
    assert "error: old-node: not reached at root@127.0.0.2:1, nothing removed:" in text
    assert "`fleetctl decommission old-node --forget`" in text
    assert "old-node" in remembered.load(fleet)


def test_forget_drops_the_host_without_touching_it_and_warns(fleet: Fleet) -> None:
    remembered.remember(fleet, [GONE])
    code, text = run("decommission", "old-node", "--forget")
    assert code == 0, text
    assert "Warning: forgot old-node without touching it. As last applied" in text
    assert "unit old-a-poller.service" in text
    assert remembered.load(fleet) == {}
    assert "Nothing to do" in run("decommission", "old-node")[1]


def test_a_renamed_host_is_not_a_host_that_left(fleet: Fleet) -> None:
    """The same machine under a new name in servers.yaml (its address, or its SSH key):
    decommissioning the old name would tear down what the new one runs."""
    node = fleet.host("worker-node-1")
    by_address = dataclasses.replace(GONE, address=node.address, port=node.port)
    remembered.remember(fleet, [by_address])
    code, text = run("plan", "--dry-run")
    assert "old-node" not in text
    code, text = run("decommission", "old-node", "--yes")
    assert code == 1
    assert "error: old-node is the machine servers.yaml now calls worker-node-1" in text
    assert "`fleetctl decommission old-node --forget`" in text
    same_key = dataclasses.replace(GONE, name="worker-node-1", address="10.9.9.9")
    remembered.remember(fleet, [GONE, same_key])  # worker-node-1 presented GONE's key
    assert remembered.load(fleet).keys() == {"worker-node-1"}  # one machine, its new name


def test_the_recorder_writes_at_most_once_a_second_and_at_the_end(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = {n: dataclasses.replace(GONE, name=n, address=n, host_key=None) for n in "abc"}
    monkeypatch.setattr(use_case, "entry", lambda _view, name: entries[name])
    written: list[list[str]] = []
    real_remember = remembered.remember

    def spy(f: Fleet, hosts: list[RememberedHost]) -> None:
        written.append([h.name for h in hosts])
        real_remember(f, hosts)

    monkeypatch.setattr(remembered, "remember", spy)
    view = types.SimpleNamespace(fleet=fleet)
    recorder = use_case.Recorder(view, interval=3600)  # type: ignore[arg-type]
    for name in ("a", "b", "c"):
        recorder(HostResult(name, ok=True))
    recorder(HostResult("x", ok=False))  # a failed host is not recorded
    assert written == [["a"]]
    recorder.flush()
    assert written == [["a"], ["b", "c"]]
    assert sorted(remembered.load(fleet)) == ["a", "b", "c"]
