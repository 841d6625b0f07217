"""One SSH key per worker host for its tunnel to the broker, kept beside the nsc keys.

Generated locally (not on the host) so the broker's authorized_keys is a pure function of
the fleet: the plan can show it before any worker host has been touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetctl.config.model import Fleet
from fleetctl.errors import LocalFileError
from fleetctl.identity import credentials


@dataclass(frozen=True)
class TunnelKey:
    host: str
    private: bytes = field(repr=False)  # OpenSSH private key: a secret
    public: str  # "ssh-ed25519 AAAA... fleet-tunnel@host"


def key_dir(fleet: Fleet) -> Path:
    return credentials.dirs_for(fleet).keys / "fleetctl-tunnel"


def _public_line(path: Path, private: bytes, host: str) -> str:
    try:
        key = serialization.load_ssh_private_key(private, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: a key with a passphrase, which the tunnel's autossh could not use.
        raise LocalFileError(
            path,
            f"is not an OpenSSH private key without a passphrase, as {host}'s tunnel key must be",
            "delete it: `fleetctl apply` makes a new one and installs it on both ends",
        ) from None
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} fleet-tunnel@{host}"


def load(fleet: Fleet, hosts: Iterable[str]) -> dict[str, TunnelKey]:
    """The keys that exist; a host without one is simply absent."""
    found = {}
    for host in hosts:
        path = key_dir(fleet) / host
        if path.is_file():
            private = path.read_bytes()
            found[host] = TunnelKey(host, private, _public_line(path, private, host))
    return found


def ensure(fleet: Fleet, hosts: Iterable[str]) -> dict[str, TunnelKey]:
    """Load, generating (0600, directory 0700) what is missing."""
    directory = key_dir(fleet)
    wanted = list(hosts)
    for host in wanted:
        path = directory / host
        if path.exists():
            continue
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
    return load(fleet, wanted)
