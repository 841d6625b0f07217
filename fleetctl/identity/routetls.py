"""The TLS the brokers of a cluster speak between themselves: a CA fleetctl keeps, and one
certificate per broker, kept beside the nsc keys (like the tunnel keys).

Routes are mutual TLS: a broker accepts a route only from a certificate this CA signed, so
nothing but the fleet's brokers can join the cluster (routes carry every account's traffic
unauthenticated otherwise). The CA's key never leaves this machine; each broker gets its own
key and certificate (its address as the subject alternative name) and the CA certificate.

`load` only reads (a plan shows a missing or stale certificate as something apply issues);
`ensure` issues what is missing or stale, only in `apply` (fleetctl/reconcile/apply.py).
A certificate is stale when its address no longer matches the broker's, when the current CA
did not sign it, or within `RENEW_BEFORE` of its expiry. `ca-previous.pem`, when present, is
trusted beside the current CA: rotating the CA (docs/operations.md) never splits the cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetctl.config.model import Fleet, Host
from fleetctl.errors import LocalFileError
from fleetctl.identity import credentials

CA_DAYS = 10 * 365
CERT_DAYS = 2 * 365
RENEW_BEFORE = datetime.timedelta(days=30)
CA_NAME = "ca"
PREVIOUS_CA = "ca-previous.pem"


@dataclass(frozen=True)
class RouteCert:
    """One broker's certificate and key (PEM)."""

    broker: str
    cert: bytes
    key: bytes = field(repr=False)  # a secret


@dataclass(frozen=True)
class RouteTls:
    """What the brokers get: the CA certificates they trust, and each broker's own."""

    ca_bundle: bytes
    certs: Mapping[str, RouteCert]


def tls_dir(fleet: Fleet) -> Path:
    return credentials.dirs_for(fleet).keys / "fleetctl-route-tls"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise LocalFileError(
            path,
            "is not a PEM certificate",
            "delete it: `fleetctl apply` issues a new one and installs it on the brokers",
        ) from None


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise LocalFileError(
            path,
            "is not a PEM EC private key without a passphrase",
            "delete it and its .pem: `fleetctl apply` issues new ones",
        )
    return key


def _san(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address)


def _fresh(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: Host
) -> bool:
    """Signed by `ca`, for `host`'s address, matching `key`, and not about to expire."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    same_key = _spki(cert.public_key()) == _spki(key.public_key())
    return (
        list(names) == [_san(host.address)]
        and same_key
        and cert.not_valid_after_utc - _now() > RENEW_BEFORE
    )


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    cert_path, key_path = directory / f"{CA_NAME}.pem", directory / f"{CA_NAME}.key"
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    return _read_cert(cert_path), _read_key(key_path)


def _bundle(directory: Path, ca: x509.Certificate) -> bytes:
    previous = directory / PREVIOUS_CA
    extra = _pem(_read_cert(previous)) if previous.is_file() else b""
    return _pem(ca) + extra


def load(fleet: Fleet) -> tuple[RouteTls | None, tuple[str, ...]]:
    """What the store holds, and the brokers apply has to issue a certificate for (all of
    them while there is no CA). Only a cluster's brokers have any."""
    brokers = fleet.brokers if fleet.is_cluster else ()
    if not brokers:
        return None, ()
    directory = tls_dir(fleet)
    ca = _ca(directory)
    if ca is None:
        return None, tuple(h.name for h in brokers)
    ca_cert, _ = ca
    certs: dict[str, RouteCert] = {}
    for host in brokers:
        cert_path, key_path = directory / f"{host.name}.pem", directory / f"{host.name}.key"
        if not (cert_path.is_file() and key_path.is_file()):
            continue
        cert, key = _read_cert(cert_path), _read_key(key_path)
        if _fresh(cert, key, ca_cert, host):
            certs[host.name] = RouteCert(host.name, _pem(cert), key_path.read_bytes())
    pending = tuple(h.name for h in brokers if h.name not in certs)
    return RouteTls(_bundle(directory, ca_cert), certs), pending


def ensure(fleet: Fleet) -> RouteTls | None:
    """Issue the CA (once) and every missing or stale broker certificate; then `load`."""
    _, pending = load(fleet)
    if pending:
        directory = tls_dir(fleet)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca = _ca(directory) or _issue_ca(directory, fleet.creds.operator)
        for name in pending:
            _issue(directory, ca, fleet.host(name))
    found, _ = load(fleet)
    return found


def _write(path: Path, data: bytes) -> None:
    """0600, written whole: a temporary file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue_ca(
    directory: Path, operator: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fleetctl routes CA ({operator})")])
    now = _now()
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(directory / f"{CA_NAME}.key", _private_pem(key))
    _write(directory / f"{CA_NAME}.pem", _pem(cert))
    return cert, key


def _issue(
    directory: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], host: Host
) -> None:
    """A broker's key and certificate, for both ends of a route (server and client)."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usage = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host.name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(host.address)]), critical=False)
        .add_extension(usage, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / f"{host.name}.key", _private_pem(key))
    _write(directory / f"{host.name}.pem", _pem(cert))
