"""Where fleetctl puts things on a host. Fixed on purpose: one layout to learn and audit."""

from __future__ import annotations

import posixpath

SYSTEMD_DIR = "/etc/systemd/system"
FLEET_ETC = "/etc/fleet"
CREDS_DIR = f"{FLEET_ETC}/creds"
TUNNEL_DIR = f"{FLEET_ETC}/tunnel"
TUNNEL_KEY = f"{TUNNEL_DIR}/id_ed25519"
TUNNEL_KNOWN_HOSTS = f"{TUNNEL_DIR}/known_hosts"
# Where the workers' env files belong (fleet.yaml `env_file`); fleetctl never writes them.
ENV_DIR = f"{FLEET_ETC}/env"
STATE_DIR = "/var/lib/fleetctl"  # manifest, journal, lock, staging
STAGING_DIR = f"{STATE_DIR}/staging"
OPT_FLEET = "/opt/fleet"  # the software fleetctl installs: the poller, the LLM CLIs
POLLER_VERSION_FILE = f"{OPT_FLEET}/venv/fleet-poller.version"
POLLER_VENV = f"{OPT_FLEET}/venv"
POLLER_BIN = f"{POLLER_VENV}/bin/fleet-poller"
# The LLM CLIs apply installs: one directory per <package>@<version>, so a version bump
# installs beside the running one and only the workers that use it restart onto it.
LLM_CLI_DIR = f"{OPT_FLEET}/llm"
LLM_CLI_VERSION_FILE = "fleet-llm-cli.version"  # in each CLI's directory, written last

TUNNEL_UNIT = "fleet-tunnel.service"
TUNNEL_USER = "fleet-tunnel"
TUNNEL_HOME = "/var/lib/fleet-tunnel"
SSHD_CONFIG_DIR = "/etc/ssh/sshd_config.d"  # sshd's drop-ins: sshd checks them, then reloads
# The broker sshd's drop-in that limits the tunnel user (fleetctl/identity/tunnellogin.py).
SSHD_TUNNEL_CONF = f"{SSHD_CONFIG_DIR}/fleet-tunnel.conf"

NATS_UNIT = "nats-server.service"
NATS_USER = "nats"
NATS_BIN = "/usr/local/bin/nats-server"
NATS_CONF_DIR = "/etc/nats"
NATS_CONF = f"{NATS_CONF_DIR}/nats-server.conf"
# A cluster's route TLS (fleetctl/identity/routetls.py): the CA bundle, the broker's own.
NATS_TLS_DIR = f"{NATS_CONF_DIR}/tls"
NATS_TLS_CA = f"{NATS_TLS_DIR}/ca.pem"
NATS_TLS_CERT = f"{NATS_TLS_DIR}/route.pem"
NATS_TLS_KEY = f"{NATS_TLS_DIR}/route.key"
NATS_HOME = "/var/lib/nats"
DEFAULT_WORK_BASE = "/var/lib/fleet"  # each worker's directory is `<base>/<id>`
# The repositories: one bare mirror per repository per host, shared by the workers that use
# it; its credentials and files in /etc/fleet/repos/<name>/; each worker's list of them in
# /etc/fleet/workers/<id>/repos.json (the poller's REPOS_FILE).
REPOS_DIR = f"{DEFAULT_WORK_BASE}/repos"
REPOS_ETC = f"{FLEET_ETC}/repos"
WORKERS_ETC = f"{FLEET_ETC}/workers"

# The directories fleetctl keeps its own things in on a host: "the directory of <what>". A worker
# owns its directory and may write everything below it (`ReadWritePaths=`), so no worker's
# directory may be one of these, lie inside one or hold one (fleetctl/config/paths.py).
OWN_DIRS = {
    FLEET_ETC: "fleetctl's configuration on the host",
    CREDS_DIR: "every worker's NATS credentials",
    TUNNEL_DIR: "the tunnel's SSH key",
    ENV_DIR: "the workers' env files",
    STATE_DIR: "fleetctl's manifest, journal, lock and staging area",
    OPT_FLEET: "the poller and the LLM CLIs fleetctl installs",
    TUNNEL_HOME: "the tunnel user's files (its authorized key on the broker)",
    SYSTEMD_DIR: "the units fleetctl writes",
    posixpath.dirname(SSHD_CONFIG_DIR): "sshd's configuration (the tunnel's limits on the broker)",
    NATS_CONF_DIR: "nats-server's configuration",
    NATS_HOME: "nats-server's home and JetStream store",
    posixpath.dirname(NATS_BIN): "the nats-server binary fleetctl installs",
    REPOS_DIR: "the repositories' mirrors",
}


POLLER_UNIT_SUFFIX = "-poller.service"  # a worker's unit: `<worker_id>-poller.service`


def poller_unit(worker_id: str) -> str:
    return f"{worker_id}{POLLER_UNIT_SUFFIX}"


def is_poller_unit(unit: str) -> bool:
    """A worker's poller (also one a removed worker left: its change names no worker)."""
    return unit.endswith(POLLER_UNIT_SUFFIX)


def creds_path(worker_id: str) -> str:
    return f"{CREDS_DIR}/{worker_id}.creds"


def unit_path(unit: str) -> str:
    return f"{SYSTEMD_DIR}/{unit}"


def cli_dir_name(package: str, version: str) -> str:
    """`@openai/codex` 0.171.0 -> `@openai+codex@0.171.0` (here and in the local cache)."""
    return f"{package.replace('/', '+')}@{version}"


def llm_cli_dir(package: str, version: str) -> str:
    return f"{LLM_CLI_DIR}/{cli_dir_name(package, version)}"


def llm_cli_bin(package: str, version: str, command: str) -> str:
    """The command the poller runs: `bin/<command>` in the CLI's directory, a link the
    bundle makes to the CLI's native binary when it ships one (fleetctl/artifacts/clicache.py)."""
    return f"{llm_cli_dir(package, version)}/bin/{command}"


def repo_mirror(name: str) -> str:
    return f"{REPOS_DIR}/{name}.git"


def repo_etc(name: str) -> str:
    """A repository's credentials, pinned host key and copied files on a host."""
    return f"{REPOS_ETC}/{name}"


def repos_file(worker_id: str) -> str:
    """The worker's repositories, as its poller reads them (REPOS_FILE)."""
    return f"{WORKERS_ETC}/{worker_id}/repos.json"


def worktrees(work_base: str) -> str:
    """Where a worker's task worktrees go: its own directory."""
    return f"{work_base}/worktrees"
