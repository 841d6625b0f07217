"""What fleetctl asks a host and how it reads the answer (pure; the agent runs in e2e)."""

from __future__ import annotations

import ast
import base64

from fleetctl.artifacts import brokerbinary
from fleetctl.reconcile import agent_client, facts
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import Inputs, Versions
from tests.support.example import example_fleet


def test_the_request_names_every_wanted_path_and_only_public_contents() -> None:
    inputs = Inputs(creds={"cc-go-dev-01": b"secret"}, versions=Versions("1+a", None))
    state = desired_state(example_fleet(), inputs).hosts["worker-node-1"]
    req = facts.request(state, with_contents=True)
    assert "/etc/fleet/creds/cc-go-dev-01.creds" in req["files"]
    assert "/etc/fleet/creds/cc-go-dev-01.creds" not in req["contents"]
    assert "/etc/systemd/system/cc-go-dev-01-poller.service" in req["contents"]
    assert req["versions"] == {
        "fleet-poller": "/opt/fleet/venv/fleet-poller.version",
        "llm-cli @anthropic-ai/claude-code@2.1.197": (
            "/opt/fleet/llm/@anthropic-ai+claude-code@2.1.197/fleet-llm-cli.version"
        ),
        "llm-cli @openai/codex@0.171.0": (
            "/opt/fleet/llm/@openai+codex@0.171.0/fleet-llm-cli.version"
        ),
    }
    assert req["node"] is False  # neither CLI here runs on Node
    assert facts.request(state, with_contents=False)["contents"] == []
    gemini_host = desired_state(example_fleet(), inputs).hosts["worker-node-2"]
    assert facts.request(gemini_host, with_contents=False)["node"] is True


def test_the_program_carries_the_request_on_stdin_not_argv() -> None:
    program = agent_client.agent_program({"op": "observe", "secret": "s3cr3t"}).decode()
    assert agent_client.AGENT_ARGV[0] == "python3" and agent_client.AGENT_ARGV[-1] == "-"
    assert program.rstrip().endswith(")")
    call = program.rstrip().splitlines()[-1]
    assert ast.literal_eval(call[len("main(") : -1]) == {"op": "observe", "secret": "s3cr3t"}


def test_parse_turns_the_answer_into_fingerprints() -> None:
    answer = {
        "files": {
            "/etc/a": {"sha256": "x", "mode": 0o644, "owner": "root", "group": "root"},
            "/etc/missing": None,
        },
        "dirs": {"/var/lib/w": {"mode": 0o750, "owner": "w", "group": "w", "is_dir": True}},
        "users": {"w": {"home": "/var/lib/w"}, "gone": None},
        "units": {
            "a.service": {"enabled": True, "active": False},
            "b.service": {"enabled": False, "active": False},
        },
        "versions": {"fleet-poller": "1+a", "nats-server": None},
        "contents": {"/etc/a": base64.b64encode(b"hello").decode()},
        "env_files": {"/etc/env": None},
        "manifest": {
            "resources": {"file /etc/a": None, "unit a.service": None},
            "units": {"a.service": {"/etc/a": "x"}},
            "revision": "r1",
        },
        "journal": {"restart": ["a.service"]},
    }
    seen = facts.parse(answer)
    assert seen.resources["file /etc/a"] == {
        "sha256": "x",
        "mode": 0o644,
        "owner": "root",
        "group": "root",
    }
    assert "file /etc/missing" not in seen.resources
    assert seen.resources["user w"] == {"home": "/var/lib/w"} and "user gone" not in seen.resources
    assert seen.resources["unit a.service"] == {"enabled": True, "active": False}
    assert "unit b.service" not in seen.resources
    assert seen.resources["package fleet-poller"] == {"version": "1+a"}
    assert "package nats-server" not in seen.resources
    assert seen.contents == {"file /etc/a": b"hello"}
    assert seen.managed == {"file /etc/a", "unit a.service"}
    assert seen.unit_inputs == {"a.service": {"/etc/a": "x"}}
    assert seen.pending == ("a.service",)
    assert seen.manifest_revision == "r1"


def test_the_broker_names_its_nats_server_by_hash_never_by_running_it() -> None:
    inputs = Inputs(versions=Versions("1+a", brokerbinary.PINNED_VERSION_LINE))
    state = desired_state(example_fleet(), inputs).hosts["broker-host"]
    req = facts.request(state, with_contents=False)
    assert req["versions"] == {"nats-server": "/usr/local/bin/nats-server"}
    assert req["hashed"] == ["nats-server"]  # the agent hashes it: docs/security.md

    def seen(digest: str) -> object:
        return facts.parse({"versions": {"nats-server": digest}}).resources["package nats-server"]

    pinned = brokerbinary.PINNED_SHA256["linux-x86_64"]
    assert seen(pinned) == {"version": "nats-server: v2.15.1"}
    # Any other binary, even one that would print the pinned version, is named by its hash.
    assert seen("ab" * 32) == {"version": f"sha256:{'ab' * 32}"}


def test_a_missing_python3_is_explained() -> None:
    message = agent_client.agent_failure(127, b"sh: 1: python3: not found\n")
    assert "python3 is not installed on the host" in message
