"""The cluster's route TLS in the store: a CA, one certificate per broker for its address,
issued only by `ensure`, issued again when stale; the previous CA trusted during a rotation.
That nats-server accepts exactly these certificates is tests/integration/test_cluster.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography import x509

from fleetctl.config.model import CredsConfig, Fleet
from fleetctl.identity import routetls
from tests.support.example import cluster_fleet, example_fleet

BROKERS = ["broker-1", "broker-2", "broker-3"]


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    creds = CredsConfig(stores_dir=tmp_path / "stores", keys_dir=tmp_path / "keys")
    return dataclasses.replace(cluster_fleet(), creds=creds)


def _san(pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in names]


def test_nothing_for_one_broker_and_everything_pending_before_apply(fleet: Fleet) -> None:
    assert routetls.load(dataclasses.replace(example_fleet(), creds=fleet.creds)) == (None, ())
    assert routetls.load(fleet) == (None, tuple(BROKERS))
    assert not routetls.tls_dir(fleet).exists()  # load only reads


def test_ensure_issues_a_ca_and_a_certificate_per_broker_for_its_address(fleet: Fleet) -> None:
    tls = routetls.ensure(fleet)
    assert tls is not None
    assert sorted(tls.certs) == BROKERS
    assert [_san(tls.certs[b].cert) for b in BROKERS] == [
        ["192.0.2.10"],
        ["192.0.2.13"],
        ["192.0.2.14"],
    ]
    ca = x509.load_pem_x509_certificate(tls.ca_bundle)
    for b in BROKERS:
        x509.load_pem_x509_certificate(tls.certs[b].cert).verify_directly_issued_by(ca)
    directory = routetls.tls_dir(fleet)
    assert {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()} == {
        name: 0o600 for b in ["ca", *BROKERS] for name in (f"{b}.pem", f"{b}.key")
    }
    assert directory.stat().st_mode & 0o777 == 0o700
    assert routetls.load(fleet) == (tls, ())
    assert routetls.ensure(fleet) == tls  # nothing stale: nothing issued again
    assert "PRIVATE" not in repr(tls)


def test_a_broker_whose_address_changed_gets_a_new_certificate(fleet: Fleet) -> None:
    before = routetls.ensure(fleet)
    assert before is not None
    moved = dataclasses.replace(
        fleet,
        hosts=tuple(
            dataclasses.replace(h, address="broker-2.example.net") if h.name == "broker-2" else h
            for h in fleet.hosts
        ),
    )
    assert routetls.load(moved)[1] == ("broker-2",)
    after = routetls.ensure(moved)
    assert after is not None
    assert _san(after.certs["broker-2"].cert) == ["broker-2.example.net"]
    assert after.certs["broker-1"] == before.certs["broker-1"]


def test_a_new_ca_reissues_every_certificate_and_the_previous_one_is_still_trusted(
    fleet: Fleet,
) -> None:
    """The rotation docs/operations.md describes: the old CA moved aside, its key removed."""
    old = routetls.ensure(fleet)
    assert old is not None
    directory = routetls.tls_dir(fleet)
    (directory / "ca.pem").rename(directory / routetls.PREVIOUS_CA)
    (directory / "ca.key").unlink()
    assert routetls.load(fleet) == (None, tuple(BROKERS))
    new = routetls.ensure(fleet)
    assert new is not None
    assert all(new.certs[b].cert != old.certs[b].cert for b in BROKERS)
    assert new.ca_bundle.endswith(old.ca_bundle)  # the new CA first, then the previous one
    assert new.ca_bundle.count(b"BEGIN CERTIFICATE") == 2


def test_a_damaged_file_is_an_error_naming_it(fleet: Fleet) -> None:
    from fleetctl.errors import LocalFileError

    routetls.ensure(fleet)
    (routetls.tls_dir(fleet) / "broker-1.key").write_bytes(b"not a key")
    with pytest.raises(LocalFileError) as e:
        routetls.load(fleet)
    assert e.value.path.name == "broker-1.key"
