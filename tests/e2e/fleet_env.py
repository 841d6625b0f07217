"""A fleet on simulated hosts: the YAML files, the stand-in CLIs on each host, and helpers to
run fleetctl inside the simulated LAN and to look at what it did on the hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetctl.config.loader import load_fleet
from tests.support.simhosts import SimNet

REPO = Path(__file__).resolve().parents[2]
FLEETCTL = str(Path(sys.executable).parent / "fleetctl")
STANDIN = REPO / "tests" / "support" / "standin_cli"
BROKER = "broker-host"
NODES = ("worker-node-1", "worker-node-2")

# One wheelhouse cache for every e2e test, filled from outside the LAN (which has no route
# to the package index) by `prepare_wheelhouse`.
CACHE = Path(tempfile.gettempdir()) / "fleetctl-e2e-cache"

# Stand-in CLIs (not real LLM CLIs) installed on every worker host.
STANDIN_FILES = {
    "/usr/local/lib/standin/standin.py": "standin.py",
    "/usr/local/bin/fake-command": "fake-command",
    "/usr/local/bin/claude": "fake-claude",
}


def worker(wid: str, host: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"worker_id": wid, "host": host, "lang": "multi", "role": "developer"}
    if extra.pop("claude", False):
        # The stand-in at its host-provided path: apply installs no CLI for it.
        entry |= {"llm": "claude-code", "model": "claude-haiku-4-5", "bin": "/usr/local/bin/claude"}
    else:
        entry |= {"llm": "command", "command": ["/usr/local/bin/fake-command"]}
    entry.update(extra)
    return entry


def default_workers() -> list[dict[str, Any]]:
    return [
        worker("cmd-a", NODES[0]),
        worker("cc-b", NODES[0], claude=True),
        worker("cmd-c", NODES[1]),
        worker("cmd-d", NODES[1]),
    ]


@dataclass
class FleetEnv:
    net: SimNet
    dir: Path
    workers: list[dict[str, Any]] = field(default_factory=default_workers)
    nodes: tuple[str, ...] = NODES  # the worker hosts, in servers.yaml order
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level keys of fleet.yaml

    @property
    def fleet_path(self) -> Path:
        return self.dir / "fleet.yaml"

    @property
    def servers_path(self) -> Path:
        return self.dir / "servers.yaml"

    def write(self) -> None:
        hosts = [
            {"name": BROKER, "address": self.net.hosts[BROKER].address, "roles": ["broker-host"]}
        ] + [
            {"name": n, "address": self.net.hosts[n].address, "roles": ["worker-host"]}
            for n in self.nodes
        ]
        self.servers_path.write_text(yaml.safe_dump({"version": 1, "servers": hosts}))
        fleet = {
            "version": 1,
            "nats": {"ack_wait": "30s"},
            # The store beside the YAML: every fleetctl run of the module shares it.
            "creds": {"stores_dir": "nsc/stores", "keys_dir": "nsc/keys"},
            "defaults": {"task_timeout": "2m"},
            "workers": self.workers,
            **self.extra,
        }
        self.fleet_path.write_text(yaml.safe_dump(fleet, sort_keys=False))

    def set_worker(self, wid: str, **changes: Any) -> None:
        for w in self.workers:
            if w["worker_id"] == wid:
                w.update(changes)
        self.write()

    def delete_worker(self, wid: str) -> None:
        self.workers = [w for w in self.workers if w["worker_id"] != wid]
        self.write()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["FLEETCTL_SSH_CONFIG"] = str(self.net.ssh_config)
        env["FLEETCTL_FLEET"] = str(self.fleet_path)
        env["FLEETCTL_SERVERS"] = str(self.servers_path)
        env["XDG_CACHE_HOME"] = str(CACHE)
        env["COLUMNS"] = "200"
        return env

    def fleetctl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.net.lan_argv([FLEETCTL, *args]),
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.net.lan_argv([FLEETCTL, *args]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )

    # ---- looking at the hosts ----------------------------------------------------------

    def sh(self, host: str, script: str) -> str:
        done = self.net.hosts[host].run(["sh", "-c", script])
        return done.stdout.decode()

    def active(self, host: str, unit: str) -> bool:
        return self.sh(host, f"systemctl is-active {unit}").strip() == "active"

    def main_pid(self, host: str, unit: str) -> str:
        return self.sh(host, f"systemctl show -p MainPID {unit}").strip()

    def exists(self, host: str, path: str) -> bool:
        return self.sh(host, f"test -e {path} && echo yes").strip() == "yes"

    def tasks_round_trip(self, workers: list[str], timeout: float = 60) -> dict[str, Any]:
        """Publish one task to each worker through a tunnel to the broker; their results."""
        found: dict[str, Any] = self._client(
            "tasks", self.publisher_creds(), str(timeout), *workers, timeout=timeout + 30
        )
        return found

    def drift_consumer(self, consumer: str, ack_wait: int) -> None:
        """Change a consumer's ack_wait on the broker, as an operator's manual edit would."""
        from fleetctl.identity.fleetusers import identity

        admin = identity(load_fleet(self.fleet_path, self.servers_path)).creds
        assert admin is not None
        self._client("drift", admin, consumer, str(ack_wait))

    def broker_accepts(self, creds: Path) -> bool:
        """Does the broker let a client in with these credentials right now?"""
        return bool(self._client("connect", creds) == "accepted")

    def ssh_socket_options(self) -> dict[str, int]:
        """TCP options of the socket under fleetctl's SSH connection to the broker."""
        options: dict[str, int] = self._client("sockopts", Path("-"))
        return options

    def task_stream(self, plan: Path) -> subprocess.Popen[str]:
        """tests/support/e2e_client.py's `stream` in the background, as fleet-publisher:
        tasks until the plan's stop file exists, then their results on stdout (JSON)."""
        return subprocess.Popen(
            self.net.lan_argv([*self._client_argv("stream", self.publisher_creds()), str(plan)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._client_env(),
        )

    def _client_argv(self, mode: str, creds: Path) -> list[str]:
        client = REPO / "tests" / "support" / "e2e_client.py"
        address = self.net.hosts[BROKER].address
        return [sys.executable, str(client), mode, address, str(self.net.ssh_config), str(creds)]

    def _client_env(self) -> dict[str, str]:
        env = self.env()
        env["PYTHONPATH"] = str(REPO)
        return env

    def _client(self, mode: str, creds: Path, *args: str, timeout: float = 60) -> Any:
        """tests/support/e2e_client.py in the LAN, as a NATS client of the broker."""
        done = subprocess.run(
            self.net.lan_argv([*self._client_argv(mode, creds), *args]),
            capture_output=True,
            text=True,
            env=self._client_env(),
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def publisher_creds(self) -> Path:
        from fleetctl.config.loader import load_fleet
        from fleetctl.identity import credentials
        from fleetctl.identity.natsaccess import PUBLISHER_USER

        authority = credentials.load(load_fleet(self.fleet_path, self.servers_path))
        assert authority is not None
        return authority.creds_path(PUBLISHER_USER)

    def revoked(self, wid: str) -> bool:
        from fleetctl.config.loader import load_fleet
        from fleetctl.identity import credentials
        from fleetctl.identity.natsaccess import worker_user

        authority = credentials.load(load_fleet(self.fleet_path, self.servers_path))
        assert authority is not None
        records = {r.name: r for r in authority.list_users()}
        return records[worker_user(wid)].revoked


def install_standins(net: SimNet, nodes: tuple[str, ...] = NODES) -> None:
    """The stand-in CLIs go into each worker host's own filesystem."""
    for name in nodes:
        host = net.hosts[name]
        for target, source in STANDIN_FILES.items():
            text = (STANDIN / source).read_text()
            text = text.replace('"$(dirname "$0")/standin.py"', "/usr/local/lib/standin/standin.py")
            host.write_file(target, text, mode=0o755)


def prepare_wheelhouse() -> None:
    """Build the wheelhouse the hosts need (their python3 is this machine's /usr/bin/python3)."""
    from fleetctl.artifacts import wheelhouse
    from fleetctl.artifacts.hostpython import Target

    probe = (
        "import json, platform, sys, sysconfig; print(json.dumps(["
        "'{}.{}'.format(*sys.version_info[:2]), sysconfig.get_platform(),"
        " '-'.join(platform.libc_ver())]))"
    )
    out = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, check=True)
    version, plat, libc = json.loads(out.stdout)
    wheelhouse.build(Target(version, plat, libc), CACHE / "fleetctl" / "wheelhouse")


@contextmanager
def simulated_fleet(
    base: Path,
    workers: list[dict[str, Any]],
    nodes: tuple[str, ...] = NODES,
    others: tuple[str, ...] = (),
) -> Iterator[FleetEnv]:
    """The broker and `nodes` on a simulated LAN, stand-ins installed, the YAML written;
    `others`: more hosts on the LAN that are not the fleet's (a git server). Skips when this
    machine cannot simulate hosts."""
    import pytest

    from tests.support.simhosts import skip_reason

    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    prepare_wheelhouse()
    with SimNet(base / "net", [BROKER, *nodes, *others]) as net:
        install_standins(net, nodes)
        env = FleetEnv(net, base, workers=workers, nodes=nodes)
        env.write()
        yield env
