"""What installing the pinned LLM CLIs costs `apply`: building each bundle here (checked
against the CLI's lock as it is written), copying it to a simulated host over SSH
(paramiko's SFTP, as fleetctl's transport does), and the host agent's `install_tree` step
(sha256, unpack, `--version`, rename).

Run: .venv/bin/python bench/bench_cli_install.py [--rounds 3]
Needs root (simulated hosts) and the CLIs in the cache (installed from npm if missing);
without either it says why and exits 0. No target: recorded in docs/performance.md. The
simulated host's link is a veth pair on this machine, so the upload figure is what SSH and
paramiko manage on these cores; a real network adds its own bandwidth limit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from fleetctl.artifacts import clibundle, clicache
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.reconcile import agent_client
from fleetctl.reconcile.resources.packages import install_cli, staged_cli
from poller.backends import BACKENDS, CliPackage
from tests.support.simhosts import SimNet, skip_reason

CLIS = [b.cli for b in BACKENDS.values() if b.cli is not None]

# Runs inside the LAN namespace: one SFTP upload of a file, timed.
UPLOAD = """
import paramiko, sys, time
address, known_hosts, key, local, remote = sys.argv[1:]
c = paramiko.SSHClient()
c.load_host_keys(known_hosts)
c.set_missing_host_key_policy(paramiko.RejectPolicy())
c.connect(address, username="root", key_filename=key, look_for_keys=False, allow_agent=False)
c.exec_command("mkdir -p " + remote.rsplit("/", 1)[0])[1].channel.recv_exit_status()
s = c.open_sftp()
t = time.monotonic()
s.put(local, remote)
print(time.monotonic() - t)
"""


def build_cold(cli: CliPackage, cache: Path, out: Path) -> tuple[float, clibundle.Bundle]:
    """A bundle built from scratch (as every apply builds it), checked against the lock as
    it is written, from a cache that links to the installed CLI."""
    link = clicache.package_dir(cli, cache)
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(clicache.package_dir(cli, clicache.default_cache_dir()))
    for old in out.glob("*.tar"):
        old.unlink()
    started = time.monotonic()
    bundle = clibundle.build(cli, out, cache)
    return time.monotonic() - started, bundle


def check(cli: CliPackage) -> float:
    """The check of the cache entry against its lock each use makes (the first in a
    process: every file hashed)."""
    clicache._checked.clear()
    started = time.monotonic()
    clicache.installed(cli)
    return time.monotonic() - started


def upload(net: SimNet, bundle: clibundle.Bundle, remote: str) -> float:
    host = net.hosts["h1"]
    argv = [sys.executable, "-c", UPLOAD, host.address, str(net.known_hosts)]
    argv += [str(net.client_key), str(bundle.path), remote]
    done = subprocess.run(net.lan_argv(argv), capture_output=True, text=True, check=True)
    return float(done.stdout)


def install(net: SimNet, cli: CliPackage, bundle: clibundle.Bundle) -> float:
    """The agent's install_tree step on the host; the seconds it reports."""
    step = install_cli(cli, bundle.sha256)
    program = agent_client.agent_program({"op": "apply", "steps": [step]})
    done = net.hosts["h1"].run(list(agent_client.AGENT_ARGV), input=program, timeout=300)
    event = json.loads(done.stdout.decode().splitlines()[-1])
    if not event.get("ok"):
        raise SystemExit(f"install_tree failed: {event}")
    net.hosts["h1"].run(["rm", "-rf", step["dest"]])
    return float(event["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = skip_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    try:
        for cli in CLIS:
            clicache.install(cli)
    except ArtifactError as e:
        print(f"skipped: {e}")
        return
    print(describe())
    rows = []
    with tempfile.TemporaryDirectory() as tmp, SimNet(Path(tmp) / "net", ["h1"]) as net:
        cache, out = Path(tmp) / "llm-clis", Path(tmp) / "bundles"
        out.mkdir()
        for cli in CLIS:
            checks, builds, uploads, installs = [], [], [], []
            for _ in range(args.rounds):
                checks.append(check(cli))
                seconds, bundle = build_cold(cli, cache, out)
                builds.append(seconds)
                uploads.append(upload(net, bundle, staged_cli(cli)))
                installs.append(install(net, cli, bundle))
            size = bundle.size / 1024**2
            rows.append((cli, size, checks, builds, uploads, installs))
    head = f"{'CLI':<36} {'MiB':>5} {'check':>7} {'build':>7} {'upload':>7} {'MiB/s':>6}"
    print(f"{head} {'install':>8}")
    for cli, size, checks, builds, uploads, installs in rows:
        up = statistics.median(uploads)
        print(
            f"{cli.package + ' ' + cli.version:<36} {size:5.0f} {statistics.median(checks):6.2f}s "
            f"{statistics.median(builds):6.2f}s {up:6.2f}s {size / up:6.0f} "
            f"{statistics.median(installs):7.2f}s"
        )
    print(f"(medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
