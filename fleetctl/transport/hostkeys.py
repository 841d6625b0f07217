"""Strict host key checking for paramiko, which Fabric leaves at "accept anything".

The key pinned in servers.yaml wins; otherwise the known_hosts files that ssh itself would
read. An unknown host is refused like a changed one: fleetctl never learns keys silently.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

import paramiko

DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """As OpenSSH prints it: SHA256:<base64 without padding>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_key_line(line: str) -> paramiko.PKey:
    """'ssh-ed25519 AAAA... [comment]' -> key."""
    kind, data = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


@functools.cache
def load_known_hosts(paths: tuple[str, ...]) -> paramiko.HostKeys:
    """Read once per run, however many hosts: parsing a long known_hosts per host is slow."""
    keys = paramiko.HostKeys()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            keys.load(str(path))
    return keys


def pinned_keys(name: str, line: str) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    key = parse_key_line(line)
    keys.add(name, key.get_name(), key)
    return keys
