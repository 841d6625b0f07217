"""apply installs the pinned Claude Code, Codex and Gemini CLI on simulated worker hosts from
the bundles built on this machine (the LAN has no npm registry), and a task through the real
poller to a claude, a zai, a codex and a gemini worker runs the real CLI there against the
provider mock, which listens on the LAN's own address.

The first node has no Node.js (its copy is removed): Claude Code and Codex run as native
binaries there. The gemini worker is on the second node, which has this machine's Node 20.
The CLIs are 235, 445 and 100 MB, so their upload dominates the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl import layout
from fleetctl.artifacts import clicache
from fleetctl.artifacts.errors import ArtifactError
from poller.backends import BACKENDS, CliPackage
from tests.e2e.fleet_env import CACHE, NODES, REPO, FleetEnv, simulated_fleet
from tests.support.simhosts import LAN_ADDRESS


def _pinned(backend: str) -> CliPackage:
    cli = BACKENDS[backend].cli
    assert cli is not None
    return cli


CLAUDE, CODEX, GEMINI = _pinned("claude"), _pinned("codex"), _pinned("gemini")
NATIVE, NODE_HOST = NODES  # the node without Node.js, the one with it
ANSWER = "answered by a real CLI on a simulated host"
PRICED = ("glm-4.6", "gpt-5.5", "gemini-2.5-pro")  # the CLIs' own figure is wrong or missing
WORKERS: dict[str, tuple[str, dict[str, Any]]] = {
    "cc-real": (NATIVE, {"llm": "claude-code", "model": "claude-sonnet-4-6", "max_turns": 3}),
    "zai-real": (NATIVE, {"llm": "zai", "model": "glm-4.6", "max_turns": 3}),
    "cx-real": (NATIVE, {"llm": "codex", "model": "gpt-5.5"}),
    "gm-real": (NODE_HOST, {"llm": "gemini", "model": "gemini-2.5-pro"}),
}


def seed_cli_cache() -> None:
    """The e2e cache (its own XDG_CACHE_HOME) gets this machine's installed CLIs by links:
    installed from npm here first if needed, outside the LAN."""
    for cli in (CLAUDE, CODEX, GEMINI):
        try:
            clicache.install(cli)
        except ArtifactError as e:
            pytest.skip(f"{cli.package} cannot be installed: {e}")
        link = clicache.package_dir(cli, CACHE / "fleetctl" / "llm-clis")
        if link.is_symlink() and not link.exists():  # the cache it pointed to was cleared
            link.unlink()
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(clicache.package_dir(cli, clicache.default_cache_dir()))


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    seed_cli_cache()
    workers = [
        {"worker_id": wid, "host": host, "env_file": f"/etc/fleet/env/{wid}.env", **fields}
        for wid, (host, fields) in WORKERS.items()
    ]
    with simulated_fleet(tmp_path_factory.mktemp("e2e-cli"), workers) as env:
        env.extra = {"prices": {m: {"input": 1.0, "output": 2.0} for m in PRICED}}
        env.write()
        yield env


@pytest.fixture(scope="module")
def provider(fleet_env: FleetEnv) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The provider mock in the LAN namespace, on the address every host can reach, and each
    worker's env file pointing its CLI there with a dummy key."""
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
    env_files = {
        "cc-real": f"ANTHROPIC_BASE_URL={url}\nANTHROPIC_AUTH_TOKEN=dummy\n",
        "zai-real": f"ANTHROPIC_BASE_URL={url}/api/anthropic\nANTHROPIC_AUTH_TOKEN=dummy\n",
        "cx-real": "OPENAI_API_KEY=dummy\n",
        "gm-real": f"GEMINI_API_KEY=dummy\nGOOGLE_GEMINI_BASE_URL={url}\n",
    }
    for wid, text in env_files.items():
        host = fleet_env.net.hosts[WORKERS[wid][0]]
        host.write_file(f"/etc/fleet/env/{wid}.env", text, mode=0o600)
    yield mock, url
    mock.kill()
    mock.wait()


def cli_homes(env: FleetEnv, url: str) -> None:
    """What each CLI reads from the worker's home: Codex's provider, Gemini's auth type."""
    codex = (
        'model_provider = "mock"\n[model_providers.mock]\nname = "mock"\n'
        f'base_url = "{url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
        "supports_websockets = false\nrequest_max_retries = 1\nstream_max_retries = 1\n"
    )
    gemini = json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}})
    for wid, path, text in (
        ("cx-real", ".codex/config.toml", codex),
        ("gm-real", ".gemini/settings.json", gemini),
    ):
        host, user, home = WORKERS[wid][0], f"fleet-{wid}", f"/var/lib/fleet/{wid}"
        env.net.hosts[host].write_file(f"{home}/{path}", text, mode=0o600, owner=user)
        env.sh(host, f"chown {user} {home}/{path.split('/')[0]}")


def test_apply_installs_the_pinned_clis_and_a_task_runs_on_each_backend(
    fleet_env: FleetEnv, provider: tuple[subprocess.Popen[str], str]
) -> None:
    mock, url = provider
    # Each host sees this machine's files (its overlay's lower layer): the first loses Node.
    fleet_env.sh(NATIVE, "rm -f /usr/bin/node /usr/local/bin/node")
    assert fleet_env.sh(NATIVE, "command -v node || echo none").strip() == "none"
    plan = fleet_env.fleetctl("plan")
    for cli in (CLAUDE, CODEX, GEMINI):
        line = f"+ package llm-cli {cli.package}@{cli.version}"
        assert line in plan.stdout, plan.stdout + plan.stderr
    assert "problem:" not in plan.stdout  # gemini's host has Node 20, the others need none

    done = fleet_env.fleetctl("apply", "--all", "--issue-creds", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    for host, cli in ((NATIVE, CLAUDE), (NATIVE, CODEX), (NODE_HOST, GEMINI)):
        home = layout.llm_cli_dir(cli.package, cli.version)
        version_file = f"{home}/{layout.LLM_CLI_VERSION_FILE}"
        assert fleet_env.sh(host, f"cat {version_file}") == f"{cli.version}\n"
        assert not fleet_env.exists(host, f"{layout.STAGING_DIR}/{Path(home).name}.tar")
    assert not fleet_env.exists(NODE_HOST, layout.llm_cli_dir(CLAUDE.package, CLAUDE.version))
    cli_homes(fleet_env, url)

    results = fleet_env.tasks_round_trip(list(WORKERS), timeout=120)
    for wid, result in results.items():
        assert (result["status"], result["output"]) == ("completed", ANSWER), (wid, result)
        assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
        assert result["cost_usd"] > 0, (wid, result)
    assert {wid: r["cost_source"] for wid, r in results.items()} == {
        "cc-real": "reported",  # Claude Code's own figure, for an Anthropic model
        "zai-real": "priced",  # fleet.yaml's prices: Claude Code's figure for glm is wrong,
        "cx-real": "priced",  # and Codex and Gemini CLI report tokens, no cost
        "gm-real": "priced",
    }

    again = fleet_env.fleetctl("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr  # installed: nothing to do
    fleet_env.sh(NODE_HOST, "rm -f /usr/bin/node /usr/local/bin/node")
    gone = fleet_env.fleetctl("plan")
    assert f"problem: {GEMINI.package} {GEMINI.version} runs on Node.js >= 20" in gone.stdout
    seen = mock.communicate(input="", timeout=10)[0]  # stdin closed: it lists its requests
    for start in ("/v1/messages", "/api/anthropic/v1/messages", "/v1/responses", "/v1beta/"):
        assert f'"path": "{start}' in seen, start  # each CLI on the hosts called the mock
