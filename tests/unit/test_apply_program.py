"""The host program: which agent steps a live plan turns into, in which order. Pure."""

from __future__ import annotations

import json
from typing import Any

from fleetctl.apply.program import HostProgram, program
from fleetctl.desired import HostState, UnitSpec, Versions, desired_state
from fleetctl.plan import ObservedHost, fingerprint, make_plan, unit_inputs
from fleetctl.tunnelkeys import TunnelKey
from tests.support.example import example_fleet

NODE = "worker-node-1"
CREDS = {"cc-go-dev-01": b"-----BEGIN NATS USER JWT-----\nsecret-cc\n", "cmd-docs-01": b"sc"}
KEY = TunnelKey(NODE, b"-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n", "ssh-ed25519 AAAA x")


def state(creds: dict[str, bytes] | None = None, poller: str = "0.1.0+aaa") -> HostState:
    return desired_state(
        example_fleet(),
        creds=CREDS if creds is None else creds,
        versions=Versions(poller, "nats-server: v2.15.1"),
        tunnel_keys={NODE: KEY},
        broker_key="ssh-ed25519 AAAAbroker",
    )[NODE]


def converged(s: HostState) -> ObservedHost:
    """What a host looks like right after a successful apply of `s`."""
    resources = {r.key: fingerprint(r) for r, _ in s.resources()}
    bare = ObservedHost(resources=resources, managed=frozenset(resources))
    inputs = {u.name: unit_inputs(s, u, bare) for u in s.units}
    return ObservedHost(resources=resources, managed=frozenset(resources), unit_inputs=inputs)


def host_program(s: HostState, observed: ObservedHost) -> tuple[HostProgram, Any]:
    plan = make_plan({NODE: s}, {NODE: observed})
    host_plan = plan.hosts[0]
    return program(host_plan, observed, revision="r1", applied_by="test"), host_plan


def labels(prog: HostProgram) -> list[str]:
    return [s.label for s in prog.steps]


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
    assert [steps.index(s) for s in order] == sorted(steps.index(s) for s in order)
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
    restarts = sorted(s for s in steps if s.startswith("restart "))
    assert restarts == [
        "restart cc-go-dev-01-poller.service",
        "restart cmd-docs-01-poller.service",
        "restart codex-py-dev-01-poller.service",
    ]


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
