"""apply installs the pinned Claude Code on a simulated worker host from the bundle built on
this machine (the LAN has no npm registry), and a task through the real poller runs the real
CLI there against the provider mock, which listens on the LAN's own address.

One backend (claude, Claude Code's native binary, no Node) on one worker host: the CLI is
235 MB, so the upload dominates; the other backends' argv and output are covered by the
contract tests (tests/contract/test_real_clis.py), run on this machine.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl import clicache, layout
from poller.backends import BACKENDS, CliPackage
from tests.e2e.fleet_env import CACHE, NODES, REPO, FleetEnv, simulated_fleet
from tests.support.simhosts import LAN_ADDRESS

_PINNED = BACKENDS["claude"].cli
assert _PINNED is not None
CLAUDE: CliPackage = _PINNED
NODE = NODES[0]
ANSWER = "answered by the real claude on a simulated host"
ENV_FILE = "/etc/fleet/env/cc-real.env"


def seed_cli_cache() -> None:
    """The e2e cache (its own XDG_CACHE_HOME) gets this machine's installed CLI by a link:
    installed from npm here first if needed, outside the LAN."""
    try:
        installed = clicache.install(CLAUDE)
    except clicache.CliInstallError as e:
        pytest.skip(f"Claude Code cannot be installed: {e}")
    link = clicache.package_dir(CLAUDE, CACHE / "fleetctl" / "llm-clis")
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(installed.parents[2])


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    seed_cli_cache()
    real = {
        "worker_id": "cc-real",
        "host": NODE,
        "llm": "claude-code",
        "model": "claude-sonnet-4-6",
        "max_turns": 3,
        "env_file": ENV_FILE,
    }
    with simulated_fleet(tmp_path_factory.mktemp("e2e-cli"), [real], nodes=(NODE,)) as env:
        yield env


@pytest.fixture(scope="module")
def provider(fleet_env: FleetEnv) -> Iterator[subprocess.Popen[str]]:
    """The provider mock in the LAN namespace, on the address every host can reach."""
    argv = [sys.executable, "-m", "tests.support.provider_mock", LAN_ADDRESS, ANSWER]
    mock = subprocess.Popen(
        fleet_env.net.lan_argv(argv),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert mock.stdout is not None
    port = int(mock.stdout.readline())
    fleet_env.net.hosts[NODE].write_file(
        ENV_FILE,
        f"ANTHROPIC_BASE_URL=http://{LAN_ADDRESS}:{port}\nANTHROPIC_AUTH_TOKEN=dummy\n",
        mode=0o600,
    )
    yield mock
    mock.kill()
    mock.wait()


def test_apply_installs_the_pinned_cli_and_a_task_runs_it(
    fleet_env: FleetEnv, provider: subprocess.Popen[str]
) -> None:
    pinned = f"{CLAUDE.package}@{CLAUDE.version}"
    plan = fleet_env.fleetctl("plan")
    assert f"+ package llm-cli {pinned}" in plan.stdout, plan.stdout + plan.stderr

    done = fleet_env.fleetctl("apply", "--all", "--issue-creds", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    home = layout.llm_cli_dir(CLAUDE.package, CLAUDE.version)
    assert fleet_env.sh(NODE, f"cat {home}/{layout.LLM_CLI_VERSION_FILE}") == "2.1.197\n"
    assert fleet_env.sh(NODE, f"{home}/bin/claude --version").split()[0] == CLAUDE.version
    assert not fleet_env.exists(NODE, f"{layout.STAGING_DIR}/{Path(home).name}.tar")
    assert fleet_env.active(NODE, "cc-real-poller.service")

    result = fleet_env.tasks_round_trip(["cc-real"], timeout=120)["cc-real"]
    assert (result["status"], result["output"]) == ("completed", ANSWER), result
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert result["cost_usd"] > 0 and result["cost_source"] == "reported"

    again = fleet_env.fleetctl("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr  # installed: nothing to do
    seen = provider.communicate(input="", timeout=10)[0]  # stdin closed: it lists its requests
    assert '"path": "/v1/messages' in seen  # the CLI on the host called the LAN's mock
