"""A host that leaves servers.yaml, on simulated hosts: the plan warns with what is still on
it, `fleetctl decommission` removes all of it (checked on the host) and forgets it.

The tests share one fleet and run in order.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator

import pytest

from fleetctl.config.loader import load_fleet
from fleetctl.reconcile import remembered
from tests.e2e.fleet_env import BROKER, NODES, FleetEnv, simulated_fleet, worker

pytestmark = pytest.mark.e2e

STAYS, LEAVES = NODES  # worker-node-1 stays in the fleet, worker-node-2 leaves it


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    workers = [worker("cmd-a", STAYS), worker("cmd-c", LEAVES)]
    with simulated_fleet(tmp_path_factory.mktemp("decommission"), workers) as env:
        yield env


def memory(env: FleetEnv) -> dict[str, remembered.RememberedHost]:
    return remembered.load(load_fleet(env.fleet_path, env.servers_path))


def test_apply_remembers_every_host_it_applied_and_where(fleet_env: FleetEnv) -> None:
    done = fleet_env.fleetctl("apply", "--all", "--issue-creds", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    known = memory(fleet_env)
    assert sorted(known) == sorted([BROKER, *NODES])
    leaving = known[LEAVES]
    assert leaving.address == fleet_env.net.hosts[LEAVES].address
    assert (leaving.port, leaving.user, leaving.roles) == (22, "root", ("worker-host",))
    assert leaving.host_key is not None and leaving.host_key.startswith("ssh-ed25519 ")
    assert "unit cmd-c-poller.service" in leaving.resources
    assert "package fleet-poller" in leaving.resources
    fleet = load_fleet(fleet_env.fleet_path, fleet_env.servers_path)
    assert stat.S_IMODE(remembered.path(fleet).stat().st_mode) == 0o600


def test_a_host_that_left_servers_yaml_is_warned_about_with_what_is_there(
    fleet_env: FleetEnv,
) -> None:
    fleet_env.nodes = (STAYS,)
    fleet_env.delete_worker("cmd-c")
    offline = fleet_env.fleetctl("plan", "--dry-run")
    assert f"Warning: {LEAVES} left servers.yaml" in offline.stdout, offline.stdout
    assert "still there (as applied" in offline.stdout
    assert "unit 'cmd-c-poller.service'" not in offline.stdout  # plain names print plainly
    assert "cmd-c-poller.service" in offline.stdout
    live = fleet_env.fleetctl("plan", "--detailed-exitcode")
    text = live.stdout + live.stderr
    assert live.returncode == 2, text
    assert "still there (its manifest):" in text
    assert "cmd-c-poller.service, fleet-tunnel.service" in text and "fleet-cmd-c" in text
    assert f"`fleetctl decommission {LEAVES}` removes it all" in text
    assert "- credentials worker-cmd-c" in text  # revoked by the fleet's own plan
    as_json = json.loads(fleet_env.fleetctl("plan", "--json").stdout)
    [gone] = as_json["departed"]
    assert (gone["name"], gone["source"], gone["error"]) == (LEAVES, "manifest", None)
    assert "file /etc/fleet/creds/cmd-c.creds" in gone["resources"]
    narrowed = fleet_env.fleetctl("plan", "--host", STAYS)  # the whole fleet's plans only
    assert narrowed.returncode == 0, narrowed.stdout + narrowed.stderr
    assert LEAVES not in narrowed.stdout


def test_an_unreachable_departed_host_is_not_touched_and_decommission_fails(
    fleet_env: FleetEnv,
) -> None:
    fleet_env.net.hosts[LEAVES].set_reachable(False)
    try:
        plan = fleet_env.fleetctl("plan", "--detailed-exitcode")
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert "! not reached:" in plan.stdout and "--forget" in plan.stdout
        done = fleet_env.fleetctl("decommission", LEAVES, "--yes")
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"error: {LEAVES}: not reached at root@" in done.stderr
        assert f"fleetctl decommission {LEAVES} --forget" in done.stderr
        assert LEAVES in memory(fleet_env)
    finally:
        fleet_env.net.hosts[LEAVES].set_reachable(True)


def test_decommission_removes_everything_fleetctl_put_there(fleet_env: FleetEnv) -> None:
    host = fleet_env.net.hosts[LEAVES]
    assert fleet_env.active(LEAVES, "cmd-c-poller.service")
    done = fleet_env.fleetctl("decommission", LEAVES, "--yes")
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    for line in (
        "- unit cmd-c-poller.service",
        "- unit fleet-tunnel.service",
        "- user fleet-cmd-c",
        "- package fleet-poller",
        "- file /etc/fleet/creds/cmd-c.creds",
    ):
        assert line in text, text
    assert f"Decommissioned {LEAVES}" in text
    assert "`fleetctl apply --all` revokes cmd-c" in text
    for unit in ("cmd-c-poller.service", "fleet-tunnel.service"):
        assert not fleet_env.active(LEAVES, unit)
        assert not fleet_env.exists(LEAVES, f"/etc/systemd/system/{unit}")
    assert fleet_env.sh(LEAVES, "ls /etc/systemd/system/*.wants 2>/dev/null | grep fleet") == ""
    passwd = host.file("/etc/passwd").read_text()
    assert "fleet-cmd-c:" not in passwd and "fleet-tunnel:" not in passwd
    for path in ("/opt/fleet", "/etc/fleet", "/var/lib/fleetctl", "/var/lib/fleet/cmd-c"):
        assert not fleet_env.exists(LEAVES, path), path
    processes = fleet_env.sh(LEAVES, "ps -eo args")
    assert "fleet-poller" not in processes and "autossh" not in processes, processes
    assert LEAVES not in memory(fleet_env)


def test_the_host_is_forgotten_and_a_second_decommission_has_nothing_to_do(
    fleet_env: FleetEnv,
) -> None:
    again = fleet_env.fleetctl("decommission", LEAVES, "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to do" in again.stdout
    done = fleet_env.fleetctl("apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet_env.revoked("cmd-c")
    plan = fleet_env.fleetctl("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert LEAVES not in plan.stdout
