"""The host program: which agent steps a live plan turns into, in which order. Pure.

Besides the step labels, the exact operations are asserted as data (kind, path, mode,
owner, systemctl verb), the way Kamal's tests assert command lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from fleetctl import layout
from fleetctl.config.model import Fleet
from fleetctl.hostside import watchdog_program
from fleetctl.identity.tunnelkeys import TunnelKey
from fleetctl.reconcile.desired.broker import NATS_STARTUP
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.desired.state import HostState
from fleetctl.reconcile.facts import ObservedHost
from fleetctl.reconcile.inputs import Inputs, Versions
from fleetctl.reconcile.plan.changes import fingerprint
from fleetctl.reconcile.plan.hosts import diff_host, unit_inputs
from fleetctl.reconcile.plan.selection import Selection
from fleetctl.reconcile.program import (
    Drain,
    HostProgram,
    Keep,
    confirm_step,
    program,
    restore_step,
    teardown,
)
from fleetctl.reconcile.resources.base import Step
from fleetctl.reconcile.resources.units import UnitSpec
from tests.support.example import example_fleet

NODE = "worker-node-1"
CLAUDE = "@anthropic-ai/claude-code"
CREDS = {"cc-go-dev-01": b"-----BEGIN NATS USER JWT-----\nsecret-cc\n", "cmd-docs-01": b"sc"}
KEY = TunnelKey(NODE, b"-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n", "ssh-ed25519 AAAA x")


def inputs(creds: dict[str, bytes] | None = None, poller: str = "0.1.0+aaa") -> Inputs:
    return Inputs(
        creds=CREDS if creds is None else creds,
        versions=Versions(poller, "nats-server: v2.15.1"),
        tunnel_keys={NODE: KEY},
        broker_keys={"broker-host": "ssh-ed25519 AAAAbroker"},
    )


def state(
    creds: dict[str, bytes] | None = None, poller: str = "0.1.0+aaa", node: str = NODE
) -> HostState:
    return desired_state(example_fleet(), inputs(creds, poller)).hosts[node]


def converged(s: HostState) -> ObservedHost:
    """What a host looks like right after a successful apply of `s`."""
    resources = {r.key: fingerprint(r) for r, _ in s.resources()}
    bare = ObservedHost(resources=resources, managed=frozenset(resources))
    inputs = {u.name: unit_inputs(s, u, bare) for u in s.units}
    return ObservedHost(resources=resources, managed=frozenset(resources), unit_inputs=inputs)


# Each LLM CLI bundle's sha256 by package, as rollout gets them from clibundle.Bundles.
CLI_SHA256 = {p: hashlib.sha256(p.encode()).hexdigest() for p in ("@openai/codex", CLAUDE)}


def host_program(s: HostState, observed: ObservedHost) -> tuple[HostProgram, Any]:
    host_plan = diff_host(s, observed, Selection(), live=True)
    prog = program(
        host_plan, observed, revision="r1", applied_by="test", now=1000, cli_sha256=CLI_SHA256
    )
    return prog, host_plan


def labels(prog: HostProgram) -> list[str]:
    return [s.label for s in prog.steps]


def stop_bound(worker: str) -> int:
    """What the agent allows a poller's stop: its drain_timeout, the unit's 30 s, a minute."""
    found = example_fleet().worker(worker)
    assert found is not None
    return found.drain_timeout + 30 + 60


def at(steps: list[str], label: str) -> int:
    """The index of the step with `label`, alone or among the pollers' steps run at once."""
    return next(i for i, s in enumerate(steps) if label in s.split(", "))


def test_a_bare_host_gets_everything_in_a_safe_order() -> None:
    prog, _ = host_program(state(), ObservedHost())
    steps = labels(prog)
    assert steps[0] == "record pending restarts"
    assert steps[-2:] == ["write the manifest", "clear the journal"]
    order = [
        "user fleet-tunnel",
        "dir /etc/fleet/tunnel",
        "install the poller 0.1.0+aaa",
        "file /etc/fleet/creds/cc-go-dev-01.creds",
        "systemctl daemon-reload",
        "enable --now fleet-tunnel.service",
        "enable --now cc-go-dev-01-poller.service",
    ]
    assert [at(steps, s) for s in order] == sorted(at(steps, s) for s in order)
    assert steps.count("systemctl daemon-reload") == 1
    assert prog.poller_version == "0.1.0+aaa" and not prog.nats_server


def test_a_converged_host_gets_no_program() -> None:
    s = state()
    prog, host_plan = host_program(s, converged(s))
    assert host_plan.changes == ()
    assert prog.empty


def test_new_creds_restart_only_that_worker_without_a_daemon_reload() -> None:
    before = state()
    creds = dict(CREDS, **{"cc-go-dev-01": b"rotated"})
    prog, host_plan = host_program(state(creds), converged(before))
    shown = [(c.symbol, c.kind, c.name, dict(c.attrs).get("action")) for c in host_plan.changes]
    assert shown == [
        ("~", "file", "/etc/fleet/creds/cc-go-dev-01.creds", None),
        ("~", "unit", "cc-go-dev-01-poller.service", "restart: cc-go-dev-01.creds changed"),
    ]
    assert labels(prog) == [
        "record pending restarts",
        "file /etc/fleet/creds/cc-go-dev-01.creds",
        "restart cc-go-dev-01-poller.service",
        "write the manifest",
        "clear the journal",
    ]


def test_a_new_poller_version_restarts_every_poller_but_not_the_tunnel() -> None:
    before = state()
    prog, _ = host_program(state(poller="0.1.0+bbb"), converged(before))
    steps = labels(prog)
    assert "install the poller 0.1.0+bbb" in steps
    restarts = [s for s in steps if s.startswith("restart ")]
    pollers = ["cc-go-dev-01", "cmd-docs-01", "cmd-wordcount-01", "codex-py-dev-01"]
    assert restarts == [", ".join(f"restart {w}-poller.service" for w in pollers)]
    # at once, each allowed its unit's TimeoutStopSec (its drain and 30 s) and a minute more
    [step] = [s for s in prog.steps if s.label == restarts[0]]
    bound = {w: stop_bound(w) for w in pollers}
    assert step.op == {
        "op": "parallel",
        "steps": [
            {"op": "systemctl", "args": ["restart", f"{w}-poller.service"], "timeout": bound[w]}
            for w in pollers
        ],
    }
    assert prog.timeout == 1800 + max(bound.values())


def test_an_orphan_is_stopped_before_and_removed_after_the_new_files() -> None:
    s = state()
    seen = converged(s)
    orphan: dict[str, dict[str, object]] = {
        "unit old-poller.service": {"enabled": True, "active": True},
        "file /etc/systemd/system/old-poller.service": {},
        "user fleet-old": {"home": "/var/lib/fleet/old"},
    }
    observed = ObservedHost(
        resources={**seen.resources, **orphan},
        managed=seen.managed | set(orphan),
        unit_inputs=seen.unit_inputs,
    )
    prog, host_plan = host_program(s, observed)
    assert {(c.symbol, c.kind, c.name) for c in host_plan.changes} == {
        ("-", "unit", "old-poller.service"),
        ("-", "file", "/etc/systemd/system/old-poller.service"),
        ("-", "user", "fleet-old"),
    }
    assert labels(prog) == [
        "stop old-poller.service",
        "remove file /etc/systemd/system/old-poller.service",
        "remove user fleet-old",
        "systemctl daemon-reload",
        "write the manifest",
    ]
    manifest = json.loads(_file_content(prog, "/var/lib/fleetctl/manifest.json"))
    assert "unit old-poller.service" not in manifest["resources"]
    assert "unit cc-go-dev-01-poller.service" in manifest["resources"]


def test_an_interrupted_apply_s_pending_restarts_are_done_next_time() -> None:
    s = state()
    seen = converged(s)
    observed = ObservedHost(
        resources=seen.resources,
        managed=seen.managed,
        unit_inputs=seen.unit_inputs,
        pending=("codex-py-dev-01-poller.service",),
    )
    prog, _ = host_program(s, observed)
    assert "restart codex-py-dev-01-poller.service" in labels(prog)


def test_no_secret_appears_in_a_label_or_the_manifest() -> None:
    prog, _ = host_program(state(), ObservedHost())
    text = " ".join(labels(prog)) + _file_content(prog, "/var/lib/fleetctl/manifest.json")
    assert "secret-cc" not in text and "OPENSSH PRIVATE" not in text


def test_units_restart_on_what_they_read() -> None:
    s = state()
    poller = next(u for u in s.units if u.name == "cc-go-dev-01-poller.service")
    tunnel = next(u for u in s.units if u.name == "fleet-tunnel.service")
    assert isinstance(poller, UnitSpec)
    assert "/etc/fleet/creds/cc-go-dev-01.creds" in poller.restart_on
    assert "package fleet-poller" in poller.restart_on
    assert "/etc/fleet/tunnel/id_ed25519" in tunnel.restart_on


def _file_content(prog: HostProgram, path: str) -> str:
    import base64

    step = next(s for s in prog.steps if s.op.get("path") == path and s.op["op"] == "file")
    return base64.b64decode(step.op["content"]).decode()


# ---- exact operations, per worker lifecycle step ------------------------------------------


def fleet_where(**changes: dict[str, Any] | None) -> Fleet:
    """The example fleet with workers changed (`None` removes one) by worker id."""
    base = example_fleet()
    workers = []
    for w in base.workers:
        change = changes.get(w.id.replace("-", "_"), {})
        if change is not None:
            workers.append(dataclasses.replace(w, **change))
    return dataclasses.replace(base, workers=tuple(workers))


def host_state(fleet: Fleet, node: str = NODE, creds: dict[str, bytes] | None = None) -> HostState:
    return desired_state(fleet, inputs(creds)).hosts[node]


def ops(prog: HostProgram) -> list[tuple[object, ...]]:
    """Each step as the data that matters: what, where, mode, owner, or systemctl's argv."""
    out: list[tuple[object, ...]] = []
    for step in prog.steps:
        op = step.op
        match op["op"]:
            case "parallel":
                out.append(("parallel", *(("systemctl", *s["args"]) for s in op["steps"])))
            case "systemctl":
                out.append(("systemctl", *op["args"]))
            case "file" | "dir":
                out.append(
                    (op["op"], op["path"], f"{op['mode']:04o}", f"{op['owner']}:{op['group']}")
                )
            case "user":
                out.append(("user", op["name"], op["home"]))
            case "remove_user":
                out.append(("remove_user", op["name"]))
            case "remove_file" | "remove_dir":
                out.append((op["op"], op["path"]))
            case "install_poller":
                out.append(("install_poller", op["version"], op["link"]))
            case "install_tree":
                out.append(("install_tree", op["src"], op["dest"], *op["check"], op["expect"]))
            case other:
                out.append((other,))
    return out


MANIFEST_OP = ("file", "/var/lib/fleetctl/manifest.json", "0600", "root:root")
JOURNAL_OP = ("file", "/var/lib/fleetctl/journal.json", "0600", "root:root")
CLEAR_JOURNAL = ("remove_file", "/var/lib/fleetctl/journal.json")
DOCS_UNIT = "/etc/systemd/system/cmd-docs-01-poller.service"
DOCS_CREDS = "/etc/fleet/creds/cmd-docs-01.creds"


def test_creating_a_worker_runs_exactly_these_operations() -> None:
    before = host_state(fleet_where(cmd_docs_01=None))
    prog, _ = host_program(host_state(example_fleet()), converged(before))
    assert ops(prog) == [
        JOURNAL_OP,
        ("user", "fleet-cmd-docs-01", "/var/lib/fleet/cmd-docs-01"),
        ("dir", "/var/lib/fleet/cmd-docs-01", "0750", "fleet-cmd-docs-01:fleet-cmd-docs-01"),
        ("file", DOCS_UNIT, "0644", "root:root"),
        ("file", DOCS_CREDS, "0600", "fleet-cmd-docs-01:fleet-cmd-docs-01"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "cmd-docs-01-poller.service"),
        MANIFEST_OP,
        CLEAR_JOURNAL,
    ]


def test_changing_a_worker_rewrites_its_unit_and_restarts_only_it() -> None:
    before = host_state(example_fleet())
    after = host_state(fleet_where(cmd_docs_01={"task_timeout": 60}))
    prog, host_plan = host_program(after, converged(before))
    assert [(c.action, c.kind, c.name, c.unit_action) for c in host_plan.changes] == [
        ("update", "file", DOCS_UNIT, None),
        ("update", "unit", "cmd-docs-01-poller.service", "restart"),
    ]
    assert ops(prog) == [
        JOURNAL_OP,
        ("file", DOCS_UNIT, "0644", "root:root"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "restart", "cmd-docs-01-poller.service"),
        MANIFEST_OP,
        CLEAR_JOURNAL,
    ]


def test_restarting_on_new_creds_needs_no_daemon_reload() -> None:
    s = host_state(example_fleet())
    rotated = host_state(example_fleet(), creds=dict(CREDS, **{"cmd-docs-01": b"rotated"}))
    prog, _ = host_program(rotated, converged(s))
    assert ops(prog) == [
        JOURNAL_OP,
        ("file", DOCS_CREDS, "0600", "fleet-cmd-docs-01:fleet-cmd-docs-01"),
        ("systemctl", "restart", "cmd-docs-01-poller.service"),
        MANIFEST_OP,
        CLEAR_JOURNAL,
    ]


def test_moving_a_worker_removes_it_here_and_creates_it_there() -> None:
    moved = fleet_where(cmd_docs_01={"host": "worker-node-2"})
    # The old host: stop, then remove what it owned for the worker.
    here_before = host_state(example_fleet())
    prog, _ = host_program(host_state(moved), converged(here_before))
    assert ops(prog) == [
        ("systemctl", "disable", "--now", "cmd-docs-01-poller.service"),
        ("remove_file", DOCS_CREDS),
        ("remove_file", DOCS_UNIT),
        ("remove_dir", "/var/lib/fleet/cmd-docs-01"),
        ("remove_user", "fleet-cmd-docs-01"),
        ("systemctl", "daemon-reload"),
        MANIFEST_OP,
    ]
    # The new host: the same worker created, started after the tunnel is in place.
    there_before = host_state(example_fleet(), node="worker-node-2")
    there = host_state(moved, node="worker-node-2")
    prog, _ = host_program(there, converged(there_before))
    assert ("systemctl", "enable", "--now", "cmd-docs-01-poller.service") in ops(prog)
    assert ("file", DOCS_UNIT, "0644", "root:root") in ops(prog)


def test_removing_a_worker_stops_it_before_removing_its_files() -> None:
    before = host_state(example_fleet())
    prog, host_plan = host_program(host_state(fleet_where(cmd_docs_01=None)), converged(before))
    assert [(c.action, c.kind, c.name, c.unit_action) for c in host_plan.changes] == [
        ("delete", "dir", "/var/lib/fleet/cmd-docs-01", None),
        ("delete", "file", DOCS_CREDS, None),
        ("delete", "file", DOCS_UNIT, None),
        ("delete", "unit", "cmd-docs-01-poller.service", "stop"),
        ("delete", "user", "fleet-cmd-docs-01", None),
    ]
    assert ops(prog)[0] == ("systemctl", "disable", "--now", "cmd-docs-01-poller.service")
    assert ops(prog)[-2:] == [("systemctl", "daemon-reload"), MANIFEST_OP]


def test_a_unit_action_is_data_not_text() -> None:
    """Restart versus reload comes from the change's field; the label is for people."""
    broker_before = host_state(example_fleet(), node="broker-host")
    conf = next(f for f in broker_before.files if f.path == "/etc/nats/nats-server.conf")
    changed = dataclasses.replace(conf, content=conf.content + b"# new\n")
    after = dataclasses.replace(
        broker_before,
        files=tuple(changed if f is conf else f for f in broker_before.files),
    )
    _, host_plan = host_program(after, converged(broker_before))
    unit = next(c for c in host_plan.changes if c.kind == "unit")
    assert unit.unit_action == "reload"
    assert dict(unit.attrs)["action"] == "reload: nats-server.conf changed"
    relabelled = dataclasses.replace(unit, attrs=(("action", "restart: anything"),))
    host_plan = dataclasses.replace(
        host_plan, changes=tuple(relabelled if c is unit else c for c in host_plan.changes)
    )
    steps = program(host_plan, converged(broker_before), revision="r", applied_by="t", now=1)
    assert ("systemctl", "reload", "nats-server.service") in ops(steps)


def _broker_with(**nats: object) -> HostState:
    fleet = example_fleet()
    changed = dataclasses.replace(fleet, nats=fleet.nats.model_copy(update=nats))
    return host_state(changed, node="broker-host")


@pytest.mark.parametrize(
    "setting",
    [{"monitor_port": 8222}, {"port": 4333}, {"listen": "10.0.0.5"}, {"max_file_store": 2**34}],
)
def test_a_setting_nats_server_reads_only_at_start_restarts_it(setting: dict[str, Any]) -> None:
    """nats-server refuses a reload that changes its listeners, HTTP monitoring or store, as
    a whole, and runs on with its old config: the plan restarts it for those."""
    before = host_state(example_fleet(), node="broker-host")
    _, host_plan = host_program(_broker_with(**setting), converged(before))
    [unit] = [c for c in host_plan.changes if c.kind == "unit"]
    assert unit.name == "nats-server.service" and unit.unit_action == "restart"
    assert dict(unit.attrs)["action"].startswith("restart: ")
    assert "nats-server startup settings" in dict(unit.attrs)["action"]


def test_a_broker_with_monitoring_from_an_earlier_fleetctl_is_restarted_once() -> None:
    """Its recorded unit inputs have no startup settings and its config had `http:`: the
    first apply restarts nats-server (a reload could not close the monitor port), the next
    plan has nothing to do."""
    before = _broker_with(monitor_port=8222)
    seen = converged(before)
    recorded = {k: dict(v) for k, v in seen.unit_inputs.items()}
    del recorded["nats-server.service"][NATS_STARTUP]
    earlier = dataclasses.replace(seen, unit_inputs=recorded)
    now = host_state(example_fleet(), node="broker-host")
    _, host_plan = host_program(now, earlier)
    [unit] = [c for c in host_plan.changes if c.kind == "unit"]
    assert unit.unit_action == "restart"
    assert dict(unit.attrs)["action"] == ("restart: nats-server startup settings changed")
    _, again = host_program(now, converged(now))
    assert [c for c in again.changes if c.kind == "unit"] == []


def test_the_manifest_records_the_time_it_is_given() -> None:
    prog, _ = host_program(state(), ObservedHost())
    manifest = json.loads(_file_content(prog, "/var/lib/fleetctl/manifest.json"))
    assert manifest["applied_at"] == 1000


def test_a_package_no_longer_wanted_is_removed_after_its_units_stop() -> None:
    """The broker that was a worker host too: its poller venvs go, with the worker."""
    broker = host_state(example_fleet(), node="broker-host")
    seen = converged(broker)
    old: dict[str, dict[str, object]] = {
        "unit old-poller.service": {"enabled": True, "active": True},
        "package fleet-poller": {"version": "0.1.0+aaa"},
    }
    observed = dataclasses.replace(
        seen, resources={**seen.resources, **old}, managed=seen.managed | set(old)
    )
    prog, _ = host_program(broker, observed)
    assert [s.op for s in prog.steps][:2] == [
        {"op": "systemctl", "args": ["disable", "--now", "old-poller.service"], "timeout": 21600},
        {"op": "remove_package", "package": "fleet-poller", "venv": "/opt/fleet/venv"},
    ]
    manifest = json.loads(_file_content(prog, "/var/lib/fleetctl/manifest.json"))
    assert "package fleet-poller" not in manifest["resources"]


def test_teardown_stops_units_then_removes_everything_and_the_state_dir() -> None:
    """`fleetctl decommission`: the plan against a host that should have nothing."""
    alone = host_state(fleet_where(cc_go_dev_01=None, codex_py_dev_01=None, cmd_wordcount_01=None))
    host_plan = diff_host(HostState(alone.host), converged(alone), Selection(), live=True)
    assert [s.op for s in teardown(host_plan).steps] == [
        {"op": "purge_previous", "log": "/var/lib/fleetctl/previous.json"},
        {"op": "systemctl", "args": ["disable", "--now", "fleet-tunnel.service"]},
        {
            "op": "systemctl",
            "args": ["disable", "--now", "cmd-docs-01-poller.service"],
            "timeout": 6 * 3600,  # its unit's TimeoutStopSec bounds it: not known here
        },
        {"op": "remove_file", "path": DOCS_CREDS},
        {"op": "remove_file", "path": "/etc/fleet/tunnel/id_ed25519"},
        {"op": "remove_file", "path": "/etc/fleet/tunnel/known_hosts"},
        {"op": "remove_file", "path": DOCS_UNIT},
        {"op": "remove_file", "path": "/etc/systemd/system/fleet-tunnel.service"},
        {"op": "remove_package", "package": "fleet-poller", "venv": "/opt/fleet/venv"},
        {"op": "remove_dir", "path": "/etc/fleet/tunnel"},
        {"op": "remove_dir", "path": "/var/lib/fleet/cmd-docs-01"},
        {"op": "remove_user", "name": "fleet-cmd-docs-01"},
        {"op": "remove_user", "name": "fleet-tunnel"},
        {"op": "remove_empty_dir", "path": "/etc/fleet/creds"},
        {"op": "remove_empty_dir", "path": "/etc/fleet"},
        {"op": "systemctl", "args": ["daemon-reload"]},
        {"op": "remove_dir", "path": "/var/lib/fleetctl"},
    ]


def test_teardown_of_a_broker_removes_the_nats_server_binary() -> None:
    broker = host_state(example_fleet(), node="broker-host")
    host_plan = diff_host(HostState(broker.host), converged(broker), Selection(), live=True)
    steps = [s.op for s in teardown(host_plan).steps]
    remove = {
        "op": "remove_package",
        "package": "nats-server",
        "binary": "/usr/local/bin/nats-server",
    }
    assert steps[1] == {"op": "systemctl", "args": ["disable", "--now", "nats-server.service"]}
    assert remove in steps
    assert steps.index(remove) < steps.index({"op": "remove_user", "name": "nats"})
    assert {"op": "remove_empty_dir", "path": "/etc/nats"} in steps


def test_an_enabled_unit_that_is_not_running_is_started_and_the_plan_says_why() -> None:
    s = state()
    seen = converged(s)
    unit = "unit cmd-docs-01-poller.service"
    resources = {**seen.resources, unit: {"enabled": True, "active": False}}
    dead = {"cmd-docs-01-poller.service": "failed: NATS_CREDS /x is not a readable file"}
    observed = dataclasses.replace(seen, resources=resources, dead_units=dead)
    prog, host_plan = host_program(s, observed)
    change = next(c for c in host_plan.changes if c.kind == "unit")
    assert change.unit_action == "start"
    assert change.attrs == (("state", "start (failed: NATS_CREDS /x is not a readable file)"),)
    assert ("systemctl", "enable", "--now", "cmd-docs-01-poller.service") in ops(prog)


def test_an_unknown_broker_key_leaves_the_tunnels_known_hosts_alone() -> None:
    """Narrowed to a worker host with the broker's key unknown: the known_hosts file is
    neither removed nor a reason to restart the tunnel."""
    known = converged(state())
    fleet = example_fleet()
    unpinned = tuple(dataclasses.replace(h, host_key=None) for h in fleet.hosts)
    fleet = dataclasses.replace(fleet, hosts=unpinned)
    unknown = desired_state(fleet, dataclasses.replace(inputs(), broker_keys={}))
    node = unknown.hosts[NODE]
    assert node.unknown_files == ("/etc/fleet/tunnel/known_hosts",)
    assert "/etc/fleet/tunnel/known_hosts" not in [f.path for f in node.files]
    host_plan = diff_host(node, known, Selection(), live=True)
    assert host_plan.changes == ()


CODEX_NEW = "/opt/fleet/llm/@openai+codex@0.172.0"
CODEX_OLD = "/opt/fleet/llm/@openai+codex@0.171.0"
CODEX_UNIT = "/etc/systemd/system/codex-py-dev-01-poller.service"


def codex_at(version: str) -> Fleet:
    """The example fleet with its codex worker's llm pinned at another Codex version."""
    fleet = example_fleet()
    codex = next(w for w in fleet.workers if w.backend == "codex")
    assert codex.cli is not None
    cli = dataclasses.replace(codex.cli, version=version)
    return fleet_where(
        codex_py_dev_01={"cli": cli, "bin": layout.llm_cli_bin(cli.package, version, cli.bin)}
    )


def test_a_codex_version_bump_installs_it_beside_and_restarts_only_the_codex_worker() -> None:
    before = host_state(example_fleet())
    after = host_state(codex_at("0.172.0"))
    prog, host_plan = host_program(after, converged(before))
    assert [(c.symbol, c.kind, c.name, c.unit_action) for c in host_plan.changes] == [
        ("+", "package", "llm-cli @openai/codex@0.172.0", None),
        ("~", "file", CODEX_UNIT, None),
        ("~", "unit", "codex-py-dev-01-poller.service", "restart"),
        ("-", "package", "llm-cli @openai/codex@0.171.0", None),
    ]
    assert dict(host_plan.changes[0].attrs) == {"version": "0.172.0"}
    assert ops(prog) == [
        JOURNAL_OP,
        (
            "install_tree",
            "/var/lib/fleetctl/staging/@openai+codex@0.172.0.tar",
            CODEX_NEW,
            "bin/codex",
            "--version",
            "0.172.0",
        ),
        ("file", CODEX_UNIT, "0644", "root:root"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "restart", "codex-py-dev-01-poller.service"),
        ("remove_dir", CODEX_OLD),  # after the restart: a stopping task may still run it
        MANIFEST_OP,
        CLEAR_JOURNAL,
    ]
    install = prog.steps[1].op
    assert install["sha256"] == CLI_SHA256["@openai/codex"]
    assert install["version_file"] == "fleet-llm-cli.version"
    assert [(c.package, c.version) for c in prog.llm_clis] == [("@openai/codex", "0.172.0")]


def test_a_lost_cli_is_installed_again_without_restarting_anything() -> None:
    """The CLI's directory lost its version file (say, removed by hand): installed again;
    the pollers start the CLI afresh per task, so none of them needs a restart."""
    s = host_state(example_fleet())
    seen = converged(s)
    resources = dict(seen.resources)
    del resources[f"package llm-cli {CLAUDE}@2.1.197"]
    prog, _ = host_program(s, dataclasses.replace(seen, resources=resources))
    assert labels(prog) == [
        f"install {CLAUDE} 2.1.197",
        "write the manifest",
    ]


def test_a_host_provided_cli_is_not_installed() -> None:
    s = host_state(fleet_where(codex_py_dev_01={"cli": None, "bin": "/usr/bin/codex"}))
    assert [p.name for p in s.packages] == ["fleet-poller", f"llm-cli {CLAUDE}@2.1.197", "git"]
    codex_unit = next(u for u in s.units if u.name == "codex-py-dev-01-poller.service")
    assert not any(t.startswith("package llm-cli") for t in codex_unit.restart_on)


def test_no_bundle_no_install() -> None:
    host_plan = diff_host(host_state(example_fleet()), ObservedHost(), Selection(), live=True)
    with pytest.raises(ValueError, match=r"no bundle of @anthropic-ai/claude-code 2\.1\.197"):
        program(host_plan, ObservedHost(), revision="r1", applied_by="t", now=1, cli_sha256={})


def test_teardown_removes_the_llm_clis_and_then_their_emptied_directories() -> None:
    s = host_state(example_fleet())
    host_plan = diff_host(HostState(s.host), converged(s), Selection(), live=True)
    steps = [step.op for step in teardown(host_plan).steps]
    removed = [op["path"] for op in steps if op["op"] in ("remove_dir", "remove_empty_dir")]
    claude_dir = "/opt/fleet/llm/@anthropic-ai+claude-code@2.1.197"
    assert claude_dir in removed and CODEX_OLD in removed
    assert removed.index(claude_dir) < removed.index("/opt/fleet/llm")
    assert removed.index("/opt/fleet/llm") < removed.index("/opt/fleet")


def test_the_sshd_drop_in_is_written_through_sshd_s_check_and_removed_with_its_reload() -> None:
    """The broker's sshd drop-in is the one file the program writes through the agent's
    `sshd_config` step (sshd -t, `sshd -T` for the tunnel user shows the drop-in's settings,
    then a reload); removing it is `remove_sshd_config` (sshd reloads without it). Every
    other file is a plain `file` step."""
    broker = host_state(example_fleet(), node="broker-host")
    bare, _ = host_program(broker, ObservedHost())
    sshd_steps = [s for s in bare.steps if s.op["op"].startswith("sshd")]
    assert [s.label for s in sshd_steps] == [f"file {layout.SSHD_TUNNEL_CONF}"]
    dropin = next(f for f in broker.files if f.path == layout.SSHD_TUNNEL_CONF)
    changed = dataclasses.replace(dropin, content=dropin.content + b"# changed\n")
    after = dataclasses.replace(
        broker, files=tuple(changed if f is dropin else f for f in broker.files)
    )
    prog, _ = host_program(after, converged(broker))
    [write, manifest] = [s.op for s in prog.steps]
    assert {k: v for k, v in write.items() if k != "content"} == {
        "op": "sshd_config",
        "path": "/etc/ssh/sshd_config.d/fleet-tunnel.conf",
        "sha256": hashlib.sha256(changed.content).hexdigest(),
        "owner": "root",
        "group": "root",
        "mode": 0o644,
        "user": "fleet-tunnel",
        "expect": ["allowstreamlocalforwarding no", "permitlisten none"],
    }
    assert manifest["path"] == "/var/lib/fleetctl/manifest.json"
    no_tunnels = dataclasses.replace(
        broker,
        users=tuple(u for u in broker.users if u.name != "fleet-tunnel"),
        dirs=tuple(d for d in broker.dirs if not d.path.startswith("/var/lib/fleet-tunnel")),
        files=tuple(f for f in broker.files if f.owner != "fleet-tunnel" and f is not dropin),
    )
    prog, _ = host_program(no_tunnels, converged(broker))
    assert ops(prog) == [
        ("remove_sshd_config",),
        ("remove_file", "/var/lib/fleet-tunnel/.ssh/authorized_keys"),
        ("remove_dir", "/var/lib/fleet-tunnel"),
        ("remove_dir", "/var/lib/fleet-tunnel/.ssh"),
        ("remove_user", "fleet-tunnel"),
        MANIFEST_OP,
    ]
    assert prog.steps[0].op == {
        "op": "remove_sshd_config",
        "path": "/etc/ssh/sshd_config.d/fleet-tunnel.conf",
    }


def test_teardown_removes_the_repository_mirror_and_files_and_leaves_git() -> None:
    """A host whose worker used a repository: its mirror, files, directories and user go
    (the mirror before its user), git stays, /etc/fleet/repos goes once empty."""
    alone = host_state(fleet_where(codex_py_dev_01=None, cmd_docs_01=None, cmd_wordcount_01=None))
    host_plan = diff_host(HostState(alone.host), converged(alone), Selection(), live=True)
    git = next(c for c in host_plan.changes if c.name == "git")
    assert git.attrs == (("left", "left installed: the host's package manager owns it"),)
    steps = [s.op for s in teardown(host_plan).steps]
    mirror = {"op": "remove_dir", "path": "/var/lib/fleet/repos/app.git"}
    assert mirror in steps
    assert not any(s.get("package") == "git" for s in steps)
    assert steps.index(mirror) < steps.index({"op": "remove_user", "name": "fleet-repo-app"})
    assert {"op": "remove_dir", "path": "/etc/fleet/repos/app"} in steps
    assert {"op": "remove_dir", "path": "/etc/fleet/workers/cc-go-dev-01"} in steps
    assert {"op": "remove_file", "path": "/etc/fleet/workers/cc-go-dev-01/repos.json"} in steps
    assert {"op": "remove_empty_dir", "path": "/etc/fleet/repos"} in steps
    assert {"op": "remove_empty_dir", "path": "/etc/fleet/workers"} in steps


# ---- the kept previous version, draining pollers, confirming, restoring --------------------


def test_a_kept_program_starts_a_generation_naming_each_workers_part() -> None:
    before = host_state(example_fleet())
    after = host_state(fleet_where(cmd_docs_01={"task_timeout": 60}))
    host_plan = diff_host(after, converged(before), Selection(), live=True)
    prog = program(
        host_plan, converged(before), revision="r2", applied_by="fleetctl apply", now=7,
        keep=Keep("a1b2"),
    )  # fmt: skip
    assert prog.generation == "a1b2"
    assert prog.steps[0] == Step(
        "keep the previous version",
        {
            "op": "begin_previous",
            "log": "/var/lib/fleetctl/previous.json",
            "id": "a1b2",
            "revision": "r2",
            "applied_at": 7,
            "applied_by": "fleetctl apply",
            "owners": {
                f"path {DOCS_UNIT}": "cmd-docs-01",
                "unit cmd-docs-01-poller.service": "cmd-docs-01",
            },
        },
    )
    assert ops(prog)[1:] == [
        JOURNAL_OP,
        ("file", DOCS_UNIT, "0644", "root:root"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "restart", "cmd-docs-01-poller.service"),
        MANIFEST_OP,
        CLEAR_JOURNAL,
    ]


def test_with_a_confirm_timeout_the_host_arms_its_watchdog() -> None:
    prog, _ = host_program(state(), ObservedHost())
    host_plan = diff_host(state(), ObservedHost(), Selection(), live=True)
    prog = program(
        host_plan, ObservedHost(), revision="r", applied_by="t", now=1, cli_sha256=CLI_SHA256,
        keep=Keep("g", confirm_timeout=120),
    )  # fmt: skip
    assert prog.steps[0].op["confirm"] == {
        "timeout": 120,
        "lock": "/var/lib/fleetctl/apply.lock",
        "program": "/var/lib/fleetctl/watchdog.py",
        "source": watchdog_program(),
        "journal": "/var/lib/fleetctl/watchdog.log",
    }
    owners = prog.steps[0].op["owners"]
    assert owners["user fleet-cc-go-dev-01"] == "cc-go-dev-01"
    assert owners["path /var/lib/fleet/cc-go-dev-01"] == "cc-go-dev-01"
    assert owners["path /etc/fleet/creds/cc-go-dev-01.creds"] == "cc-go-dev-01"
    assert "path /etc/fleet/tunnel/id_ed25519" not in owners  # the host's, no worker's


@pytest.mark.parametrize("seconds", [0.0, 300.0])
def test_a_drain_limit_reaches_every_stopping_poller_and_nothing_else(seconds: float) -> None:
    """`--no-drain` (0) and `--drain-timeout`: restarts and removals of pollers alike; the
    tunnel and starting pollers have nothing to drain."""
    before = host_state(example_fleet())
    after = host_state(fleet_where(cmd_docs_01=None), creds=dict(CREDS, **{"cc-go-dev-01": b"r"}))
    host_plan = diff_host(after, converged(before), Selection(), live=True)
    prog = program(
        host_plan, converged(before), revision="r", applied_by="t", now=1, drain=Drain(seconds)
    )
    drained = {"seconds": seconds}
    assert labels(prog)[:2] == ["record pending restarts", "stop cmd-docs-01-poller.service"]
    assert prog.steps[1].op == {
        "op": "systemctl",
        "args": ["disable", "--now", "cmd-docs-01-poller.service"],
        "timeout": 6 * 3600,
        "drain": drained,
    }
    restart = next(s.op for s in prog.steps if s.label == "restart cc-go-dev-01-poller.service")
    assert restart == {
        "op": "systemctl",
        "args": ["restart", "cc-go-dev-01-poller.service"],
        "timeout": stop_bound("cc-go-dev-01"),
        "drain": drained,
    }


def test_confirming_and_restoring_are_one_step_each() -> None:
    assert confirm_step("g7") == Step(
        "confirm the new version",
        {"op": "confirm_previous", "log": "/var/lib/fleetctl/previous.json", "id": "g7"},
    )
    assert restore_step() == Step(
        "restore the previous version",
        {"op": "restore_previous", "log": "/var/lib/fleetctl/previous.json", "id": None},
    )
    assert restore_step("g7", ["cc-b", "cc-a"], Drain(0)).op == {
        "op": "restore_previous",
        "log": "/var/lib/fleetctl/previous.json",
        "id": "g7",
        "workers": ["cc-a", "cc-b"],
        "drain": {"seconds": 0},
    }
