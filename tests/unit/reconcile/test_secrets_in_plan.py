"""A sensitive file's content never reaches plan text, --diff or JSON: only its hash."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace

from rich.console import Console

from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.desired.state import FleetState
from fleetctl.reconcile.facts import ObservedHost
from fleetctl.reconcile.plan.fleet import make_plan
from fleetctl.reconcile.plan.to_json import plan_to_json
from fleetctl.reconcile.resources.files import FileSpec
from fleetctl.ui.plan_view import print_plan
from tests.support.example import example_fleet

SECRET = b"-----BEGIN NATS USER JWT-----\neyJ0eXAi.secret-material\nSUAKEYSEEDSECRET\n"
PATH = "/etc/fleet/creds/cc-go-dev-01.creds"


def _with_secret() -> FleetState:
    desired = desired_state(example_fleet())
    state = desired.hosts["worker-node-1"]
    creds = FileSpec(
        PATH, SECRET, "fleet-cc-go-dev-01", "fleet-cc-go-dev-01", 0o600, True, "cc-go-dev-01"
    )
    hosts = {**desired.hosts, "worker-node-1": replace(state, files=(*state.files, creds))}
    return replace(desired, hosts=hosts)


def _text(plan: object) -> str:
    buf = io.StringIO()
    print_plan(Console(file=buf, width=200), plan, show_diff=True)  # type: ignore[arg-type]
    return buf.getvalue()


def test_created_secret_is_masked_in_text_diff_and_json() -> None:
    plan = make_plan(_with_secret())
    digest = hashlib.sha256(SECRET).hexdigest()
    text = _text(plan)
    assert f"(sensitive, sha256:{digest[:12]}…)" in text
    dumped = json.dumps(plan_to_json(plan, with_content=True))
    for leak in (b"secret-material", b"SUAKEYSEED", b"BEGIN NATS"):
        assert leak.decode() not in text
        assert leak.decode() not in dumped
    creds = next(c for h in plan_to_json(plan)["hosts"] for c in h["changes"] if c["name"] == PATH)
    assert creds["sensitive"] is True and creds["sha256"] == digest


def test_changed_secret_is_masked_and_old_content_not_shown() -> None:
    old = b"OLD-SECRET-SEED"
    observed = {
        "worker-node-1": ObservedHost(
            resources={
                f"file {PATH}": {"sha256": "0" * 64, "mode": 0o600, "owner": "x", "group": "x"}
            },
            contents={f"file {PATH}": old},
        )
    }
    plan = make_plan(_with_secret(), observed)
    text = _text(plan)
    assert f"~ file {PATH}" in text
    assert "OLD-SECRET-SEED" not in text and "secret-material" not in text
