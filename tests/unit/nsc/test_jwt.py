"""JWT v2: round trip, signatures, jti, and byte-compatibility with tokens Go wrote."""

from __future__ import annotations

import json
import time

import pytest

from nsc import jwt
from nsc.claims import user_nats
from nsc.keys import Role, generate
from nsc.permissions import Permissions

# User JWTs written by the Go library (nsc), public parts only, from public test files
# (cgrates/cgrates nats tests; a santa workshop example). They pin our decoding, signature
# check, jti algorithm and Go-style JSON (field order, `\u003e` for `>`) to the reference.
GO_USER_JWT_DEFAULT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJETFRGNFpLVVdNNFRPRkVNQko0UEUzTV"
    "FFVlhIUkJJN0xZNDdZNEMzNTNMWlJKSU5CUkJRIiwiaWF0IjoxNjI0ODg1NzMwLCJpc3MiOiJBQVlKRFZMWkdXTjdZM0"
    "ZCUENWWENSVlFaREZNWUdIVTRZWExHU1hYN1UyNTRLSDVTQzNSNVFLTSIsIm5hbWUiOiJ1c2VyIiwic3ViIjoiVUQzQk"
    "dXSUJQVTNDV0w0SE9VVTRWSkVRV1RVQVNBRUc2T0ozWEhNM0VFSk5BMlBBM1VWTllUWk4iLCJuYXRzIjp7InB1YiI6e3"
    "0sInN1YiI6e30sInN1YnMiOi0xLCJkYXRhIjotMSwicGF5bG9hZCI6LTEsInR5cGUiOiJ1c2VyIiwidmVyc2lvbiI6Mn"
    "19.YmFL5nRMkEOXe77sQJPPRv_vwi89tzhVVl0AVjE4sXWyoWIHiCepNw28DbpJ0p_MlT8Qf0SY2cjAhIm-Qi7lDw"
)
GO_USER_JWT_PERMS = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiI0N1dWSzdBUkpUV1c1NFhJSENIVDU1SlM3M1"
    "dWU1VUTUxUV1U0SUdPUlVJVUFHUVRLQkdRIiwiaWF0IjoxNzYxMzk3NjA4LCJpc3MiOiJBRE40R1VISEtNR01MMkQyQU"
    "RFTFBVWUVGRjNRWU5JNERWTjZGNDNKUFA2R0k3VjRTVVlTSlRCNCIsIm5hbWUiOiJ0ZXN0LW1hY2hpbmUtMTIzNDUiLC"
    "JzdWIiOiJVQ043WTQ1VzVLTkE3V01ZTVdSQVVRSkRDSEVOQ1o3N1BSWVNCMkhYSENNUFRBNlBXRVZMVVRNTyIsIm5hdH"
    "MiOnsicHViIjp7ImFsbG93IjpbIl9JTkJPWC5cdTAwM2UiXX0sInN1YiI6eyJhbGxvdyI6WyJfSU5CT1guXHUwMDNlIi"
    "wic2FudGEtY2xpZW50cyIsInNhbnRhLioiLCJzYW50YS5ob3N0LioiLCJzYW50YS50YWcuKiIsIndvcmtzaG9wIl19LC"
    "JyZXNwIjp7Im1heCI6MSwidHRsIjowfSwic3VicyI6LTEsImRhdGEiOi0xLCJwYXlsb2FkIjotMSwidHlwZSI6InVzZX"
    "IiLCJ2ZXJzaW9uIjoyfX0.L2C1512oLT6KDkgRLN8Ggl5Pa9ZQ1_a_NCqL8YZyzp9ot4PwHLHkLsGNuIgodRYi7LWybYK"
    "KIPJN1eRTxs0CDw"
)


@pytest.mark.parametrize("token", [GO_USER_JWT_DEFAULT, GO_USER_JWT_PERMS])
def test_tokens_written_by_go_verify_and_reencode_byte_for_byte(token: str) -> None:
    d = jwt.verify_token(token, check_time=False)
    assert d.claims["jti"] == jwt.claims_hash(d.claims)
    assert jwt.go_json(d.claims) == jwt.unb64url(token.split(".")[1])
    assert jwt.go_json(d.header) == jwt.unb64url(token.split(".")[0])


def test_default_user_claims_match_what_go_writes() -> None:
    go = jwt.decode(GO_USER_JWT_DEFAULT).claims["nats"]
    ours = user_nats(permissions=Permissions(), issuer_account="")
    assert {**ours, "version": 2} == go
    assert list({**ours, "version": 2}) == list(go)  # same field order


def test_round_trip_sets_standard_claims() -> None:
    op = generate(Role.OPERATOR)
    token = jwt.encode(
        subject=op.public_key, name="op", nats={"type": "operator"}, signer=op, expires=0
    )
    d = jwt.verify_token(token)
    assert d.header == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert list(d.claims) == ["jti", "iat", "iss", "name", "sub", "nats"]
    assert d.claims["iss"] == d.claims["sub"] == op.public_key
    assert abs(d.claims["iat"] - time.time()) < 5
    assert d.claims["nats"] == {"type": "operator", "version": 2}
    assert "=" not in token


def test_tampered_payload_fails_verification() -> None:
    acct, user = generate(Role.ACCOUNT), generate(Role.USER)
    token = jwt.encode(
        subject=user.public_key,
        name="u",
        nats=user_nats(permissions=Permissions(), issuer_account=""),
        signer=acct,
    )
    h, p, s = token.split(".")
    claims = json.loads(jwt.unb64url(p))
    claims["nats"]["pub"] = {"allow": [">"]}
    forged = f"{h}.{jwt.b64url(jwt.go_json(claims))}.{s}"
    with pytest.raises(jwt.JwtError, match="signature"):
        jwt.verify_token(forged)
    other = generate(Role.ACCOUNT)
    resigned = f"{h}.{p}.{jwt.b64url(other.sign(f'{h}.{p}'.encode()))}"
    with pytest.raises(jwt.JwtError, match="signature"):
        jwt.verify_token(resigned)


def test_jti_must_match_claims() -> None:
    acct, user = generate(Role.ACCOUNT), generate(Role.USER)
    token = jwt.encode(subject=user.public_key, name="u", nats={"type": "user"}, signer=acct)
    h, p, _ = token.split(".")
    claims = json.loads(jwt.unb64url(p))
    claims["name"] = "someone-else"
    body = f"{h}.{jwt.b64url(jwt.go_json(claims))}"
    with pytest.raises(jwt.JwtError, match="jti"):
        jwt.verify_token(f"{body}.{jwt.b64url(acct.sign(body.encode()))}")


def test_wrong_role_cannot_sign() -> None:
    user = generate(Role.USER)
    with pytest.raises(jwt.JwtError, match="cannot sign"):
        jwt.encode(subject=user.public_key, name="u", nats={"type": "user"}, signer=user)


def test_expiry_is_checked() -> None:
    acct, user = generate(Role.ACCOUNT), generate(Role.USER)
    now = int(time.time())
    token = jwt.encode(
        subject=user.public_key,
        name="u",
        nats={"type": "user"},
        signer=acct,
        issued_at=now - 100,
        expires=now - 10,
    )
    with pytest.raises(jwt.JwtError, match="expired"):
        jwt.verify_token(token)
    assert jwt.verify_token(token, check_time=False).claims["exp"] == now - 10


@pytest.mark.parametrize(
    "token", ["", "a.b", "a.b.c.d", "!!.e30.e30", "e30.e30.e30", GO_USER_JWT_DEFAULT[:-20]]
)
def test_malformed_tokens_raise_jwt_error(token: str) -> None:
    with pytest.raises(jwt.JwtError):
        jwt.verify_token(token)


def test_go_json_escapes_like_go() -> None:
    assert jwt.go_json({"a": "x.>", "b": "<&>", "c": "é"}) == (
        b'{"a":"x.\\u003e","b":"\\u003c\\u0026\\u003e","c":"\xc3\xa9"}'
    )
