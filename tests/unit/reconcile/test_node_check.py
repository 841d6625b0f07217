"""The plan says when a host lacks the Node.js an installed LLM CLI runs on (Gemini CLI), from
what the host's agent found (`node --version` on the units' PATH), instead of guessing."""

from __future__ import annotations

import pytest

from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.facts import ObservedHost
from fleetctl.reconcile.plan.hosts import diff_host
from fleetctl.reconcile.plan.selection import Selection
from tests.support.example import example_fleet

GEMINI = "@google/gemini-cli 0.61.0 runs on Node.js >= 20, and "


def problems(node: str | None, host: str = "worker-node-2") -> list[str]:
    state = desired_state(example_fleet()).hosts[host]
    plan = diff_host(state, ObservedHost(node=node), Selection(), live=True)
    return [n for n in plan.notes if n.startswith("problem:")]


@pytest.mark.parametrize(
    ("node", "found"),
    [
        ("", "there is no node on the PATH"),
        ("v18.19.0", "node v18.19.0 is too old"),
        ("v18\x1b[2J", "node of an unknown version is too old"),  # nothing of it is printed
    ],
)
def test_a_gemini_host_without_a_recent_node_is_a_problem(node: str, found: str) -> None:
    assert problems(node) == [
        f"problem: {GEMINI}{found} of the units (/usr/local/bin, /usr/bin, /bin): "
        "install Node.js 20 or newer"
    ]


def test_a_recent_node_or_native_clis_only_are_no_problem() -> None:
    assert problems("v20.20.2") == [] and problems("v22.1.0") == []
    assert problems("", host="worker-node-1") == []  # Claude Code and Codex: native binaries
