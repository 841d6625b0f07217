"""A fleet without a servers.yaml runs on this machine only (`fleetctl init` writes one): the
commands that work on a local fleet (`up`, `down`, `validate`, `status`, `logs` and the task
commands) then read the built-in inventory `local-servers.yaml`, one host `local` with both
roles, and its workers name `host: local`. `plan`, `apply` and the others still need a real
servers.yaml: they act on hosts."""

from __future__ import annotations

from pathlib import Path

LOCAL_SERVERS = Path(__file__).with_name("local-servers.yaml")
LOCAL_HOST = "local"


def servers_or_local(servers: Path) -> Path:
    """`servers` if it exists, else the built-in inventory of this machine."""
    return servers if servers.exists() else LOCAL_SERVERS
