"""apply installs the pinned Claude Code and Codex on a simulated worker host from the
bundles built on this machine (the LAN has no npm registry), and a task through the real
poller to each worker runs the real CLI there against the provider mock, which listens on the
LAN's own address.

Two backends (claude and codex: native binaries, no Node on the host) on one worker host;
zai is claude with another endpoint, and gemini (a Node program) is left to the contract
tests (tests/contract/test_real_clis.py), which run all four on this machine. The CLIs are
235 MB and 445 MB, so their upload dominates the test.
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


def _pinned(backend: str) -> CliPackage:
    cli = BACKENDS[backend].cli
    assert cli is not None
    return cli


CLAUDE, CODEX = _pinned("claude"), _pinned("codex")
NODE = NODES[0]
ANSWER = "answered by a real CLI on a simulated host"


def seed_cli_cache() -> None:
    """The e2e cache (its own XDG_CACHE_HOME) gets this machine's installed CLIs by links:
    installed from npm here first if needed, outside the LAN."""
    for cli in (CLAUDE, CODEX):
        try:
            installed = clicache.install(cli)
        except clicache.CliInstallError as e:
            pytest.skip(f"{cli.package} cannot be installed: {e}")
        link = clicache.package_dir(cli, CACHE / "fleetctl" / "llm-clis")
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(installed.parents[2])


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    seed_cli_cache()
    claude = {"llm": "claude-code", "model": "claude-sonnet-4-6", "max_turns": 3}
    codex = {"llm": "codex", "model": "gpt-5.5"}
    workers = [
        {"worker_id": wid, "host": NODE, "env_file": f"/etc/fleet/env/{wid}.env", **fields}
        for wid, fields in (("cc-real", claude), ("cx-real", codex))
    ]
    with simulated_fleet(tmp_path_factory.mktemp("e2e-cli"), workers, nodes=(NODE,)) as env:
        yield env


@pytest.fixture(scope="module")
def provider(fleet_env: FleetEnv) -> Iterator[tuple[subprocess.Popen[str], str]]:
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
    url = f"http://{LAN_ADDRESS}:{int(mock.stdout.readline())}"
    host = fleet_env.net.hosts[NODE]
    claude = f"ANTHROPIC_BASE_URL={url}\nANTHROPIC_AUTH_TOKEN=dummy\n"
    host.write_file("/etc/fleet/env/cc-real.env", claude, mode=0o600)
    host.write_file("/etc/fleet/env/cx-real.env", "OPENAI_API_KEY=dummy\n", mode=0o600)
    yield mock, url
    mock.kill()
    mock.wait()


def codex_home(env: FleetEnv, url: str) -> None:
    """Codex reaches another endpoint through a provider in its home's config.toml."""
    config = (
        'model_provider = "mock"\n[model_providers.mock]\nname = "mock"\n'
        f'base_url = "{url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
        "supports_websockets = false\nrequest_max_retries = 1\nstream_max_retries = 1\n"
    )
    path = "/var/lib/fleet/cx-real/.codex/config.toml"
    env.net.hosts[NODE].write_file(path, config, mode=0o600, owner="fleet-cx-real")
    env.sh(NODE, "chown fleet-cx-real /var/lib/fleet/cx-real/.codex")


def test_apply_installs_the_pinned_clis_and_a_task_runs_each(
    fleet_env: FleetEnv, provider: tuple[subprocess.Popen[str], str]
) -> None:
    mock, url = provider
    # The host sees this machine's files (its overlay's lower layer): take its Node away, to
    # show that neither CLI needs it.
    fleet_env.sh(NODE, "rm -f /usr/bin/node /usr/local/bin/node")
    assert fleet_env.sh(NODE, "command -v node || echo none").strip() == "none"
    plan = fleet_env.fleetctl("plan")
    for cli in (CLAUDE, CODEX):
        line = f"+ package llm-cli {cli.package}@{cli.version}"
        assert line in plan.stdout, plan.stdout + plan.stderr

    done = fleet_env.fleetctl("apply", "--all", "--issue-creds", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    for cli in (CLAUDE, CODEX):
        home = layout.llm_cli_dir(cli.package, cli.version)
        version_file = f"{home}/{layout.LLM_CLI_VERSION_FILE}"
        assert fleet_env.sh(NODE, f"cat {version_file}") == f"{cli.version}\n"
        assert cli.version in fleet_env.sh(NODE, f"{home}/bin/{cli.bin} --version").split()
        assert not fleet_env.exists(NODE, f"{layout.STAGING_DIR}/{Path(home).name}.tar")
    assert "problem:" not in plan.stdout + done.stdout  # no CLI here needs Node
    codex_home(fleet_env, url)

    results = fleet_env.tasks_round_trip(["cc-real", "cx-real"], timeout=120)
    claude, codex = results["cc-real"], results["cx-real"]
    assert (claude["status"], claude["output"]) == ("completed", ANSWER), claude
    assert claude["usage"]["input_tokens"] > 0 and claude["usage"]["output_tokens"] > 0
    assert claude["cost_usd"] > 0 and claude["cost_source"] == "reported"
    assert (codex["status"], codex["output"]) == ("completed", ANSWER), codex
    assert codex["usage"]["input_tokens"] > 0 and codex["usage"]["output_tokens"] > 0
    assert codex["cost_source"] == "unknown"  # Codex reports tokens, no cost

    again = fleet_env.fleetctl("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr  # installed: nothing to do
    seen = mock.communicate(input="", timeout=10)[0]  # stdin closed: it lists its requests
    assert '"path": "/v1/messages' in seen  # the CLIs on the host called the LAN's mock
    assert '"path": "/v1/responses' in seen
