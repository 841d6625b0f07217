"""A tunnel key file fleetctl cannot use is an error naming the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetctl.config.model import Fleet
from fleetctl.errors import LocalFileError
from fleetctl.identity import tunnelkeys
from tests.support.example import example_fleet


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    monkeypatch.setenv("NKEYS_PATH", str(tmp_path / "keys"))
    return example_fleet()


def _write(fleet: Fleet, host: str, content: bytes) -> Path:
    path = tunnelkeys.key_dir(fleet) / host
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_a_key_with_a_passphrase_is_refused_with_the_fix(fleet: Fleet) -> None:
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = _write(fleet, "worker-node-1", encrypted)
    with pytest.raises(LocalFileError) as caught:
        tunnelkeys.load(fleet, ["worker-node-1"])
    assert caught.value.path == path
    assert "without a passphrase" in caught.value.what
    assert "delete it" in caught.value.fix


def test_a_good_key_still_loads(fleet: Fleet) -> None:
    made = tunnelkeys.ensure(fleet, ["worker-node-1"])
    assert tunnelkeys.load(fleet, ["worker-node-1"]) == made
