"""Strict host key checking for paramiko, which Fabric leaves at "accept anything".

The key pinned in servers.yaml wins; otherwise the known_hosts files that ssh itself would
read. An unknown host is refused like a changed one: fleetctl never learns keys silently.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
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


def load_known_hosts(paths: Iterable[str]) -> paramiko.HostKeys:
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


def expected_line(keys: paramiko.HostKeys, name: str) -> str | None:
    """The first key known for `name` as an authorized_keys-style line, for the tunnel's
    known_hosts on worker hosts."""
    found = keys.lookup(name)
    if not found:
        return None
    kind = next(iter(found.keys()))
    key = found[kind]
    return f"{key.get_name()} {key.get_base64()}"
