"""JWT v2 as NATS writes it (github.com/nats-io/jwt/v2), encoded and verified by hand.

Header `{"typ":"JWT","alg":"ed25519-nkey"}`; every part base64url without padding; the
signature is Ed25519 by the issuer's NKey over "header.payload". `jti` is base32 (no
padding) of SHA-512/256 over the Go JSON of the standard claims with `jti` empty, exactly as
`ClaimsData.hash()` does, so our tokens are byte-compatible in meaning with nsc's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from nsc.errors import NscError
from nsc.keys import NKey, Role, verify

HEADER: dict[str, str] = {"typ": "JWT", "alg": "ed25519-nkey"}
LIB_VERSION = 2
# Go field order of ClaimsData (encoding/json writes struct fields in declaration order).
_CLAIMS_DATA_ORDER = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")
# Which key roles may sign which claim type (ExpectedPrefixes in the Go library).
SIGNERS: dict[str, frozenset[Role]] = {
    "operator": frozenset({Role.OPERATOR}),
    "account": frozenset({Role.OPERATOR, Role.ACCOUNT}),
    "user": frozenset({Role.ACCOUNT}),
}


class JwtError(NscError, ValueError):
    """A token that cannot be decoded, is not JWT v2, or whose signature does not verify."""


def go_json(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, >, & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("a JWT part is not base64url") from None


def claims_hash(claims_data: dict[str, Any]) -> str:
    """The `jti`: base32(sha512/256(Go JSON of the standard claims with jti empty))."""
    ordered = {k: claims_data[k] for k in _CLAIMS_DATA_ORDER if claims_data.get(k)}
    ordered.pop("jti", None)
    digest = hashlib.new("sha512_256", go_json(ordered)).digest()
    return base64.b32encode(digest).rstrip(b"=").decode()


def encode(
    *,
    subject: str,
    name: str,
    nats: dict[str, Any],
    signer: NKey,
    expires: int = 0,
    issued_at: int | None = None,
) -> str:
    """Sign a claim: `nats` is the type-specific part; iss, iat, jti and version are set here."""
    claim_type = nats.get("type")
    if claim_type not in SIGNERS:
        raise JwtError(f"unsupported claim type {claim_type!r}")
    if signer.role not in SIGNERS[claim_type]:
        raise JwtError(f"a {signer.role.name.lower()} key cannot sign {claim_type} claims")
    data: dict[str, Any] = {
        "exp": int(expires),
        "iat": int(time.time()) if issued_at is None else int(issued_at),
        "iss": signer.public_key,
        "name": name,
        "sub": subject,
    }
    payload = {k: data[k] for k in _CLAIMS_DATA_ORDER if data.get(k)}
    payload = {"jti": claims_hash(payload), **payload}
    payload = {k: payload[k] for k in _CLAIMS_DATA_ORDER if k in payload}
    payload["nats"] = {**nats, "version": LIB_VERSION}
    signing_input = f"{b64url(go_json(HEADER))}.{b64url(go_json(payload))}"
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode()))}"


@dataclass(frozen=True)
class Decoded:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def claim_type(self) -> str:
        return str(self.claims.get("nats", {}).get("type", ""))


def decode(token: str) -> Decoded:
    """Split and parse a token without checking the signature (see `verify_token`)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three dot-separated parts")
    try:
        header = json.loads(unb64url(parts[0]))
        claims = json.loads(unb64url(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise JwtError("a JWT part is not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("JWT header and claims must be JSON objects")
    if str(header.get("typ", "")).upper() != "JWT":
        raise JwtError(f"not a JWT: typ {header.get('typ')!r}")
    if str(header.get("alg", "")).lower() != HEADER["alg"]:
        raise JwtError(f"not a NATS JWT v2: alg {header.get('alg')!r}")
    return Decoded(header, claims, f"{parts[0]}.{parts[1]}".encode(), unb64url(parts[2]))


def verify_token(token: str, *, now: float | None = None, check_time: bool = True) -> Decoded:
    """Decode, then check the signature against `iss`, the `jti`, and exp/nbf."""
    d = decode(token)
    issuer = str(d.claims.get("iss", ""))
    if not issuer or not verify(issuer, d.signing_input, d.signature):
        raise JwtError("JWT signature does not verify against its issuer")
    if d.claim_type in SIGNERS and Role.of_public_key(issuer) not in SIGNERS[d.claim_type]:
        raise JwtError(f"{d.claim_type} JWT issued by a key of the wrong role")
    if d.claims.get("jti") != claims_hash(d.claims):
        raise JwtError("JWT jti does not match its claims")
    if check_time:
        t = time.time() if now is None else now
        exp = int(d.claims.get("exp") or 0)
        nbf = int(d.claims.get("nbf") or 0)
        if exp and t > exp:
            raise JwtError("JWT is expired")
        if nbf and nbf > t:
            raise JwtError("JWT is not yet valid")
    return d
