"""The .creds format, NKeys, and that seeds never show up in repr, str, errors or logs."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import nkeys
import pytest

from nsc import jwt
from nsc.claims import user_nats
from nsc.creds import CredsError, format_creds, parse_creds
from nsc.keys import KeyError_, NKey, Role, from_seed, generate, verify
from nsc.permissions import Permissions
from nsc.secret import Secret


def _user_jwt(user: NKey) -> str:
    acct = generate(Role.ACCOUNT)
    nats = user_nats(permissions=Permissions(), issuer_account="")
    return jwt.encode(subject=user.public_key, name="w1", nats=nats, signer=acct)


def test_creds_file_is_exactly_the_go_layout() -> None:
    user = generate(Role.USER)
    token = _user_jwt(user)
    text = format_creds(token, user.seed).reveal().decode()
    seed = user.seed.reveal().decode()
    assert text == (
        f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )
    parsed_jwt, parsed_seed = parse_creds(text)
    assert parsed_jwt == token
    assert parsed_seed == user.seed


def test_creds_read_by_nats_py(tmp_path: Path) -> None:
    """nats-py has its own creds reader: it must find our JWT and seed."""
    from nats.aio.client import Client

    user = generate(Role.USER)
    token = _user_jwt(user)
    path = tmp_path / "u.creds"
    path.write_bytes(format_creds(token, user.seed).reveal())
    nc = Client()
    assert bytes(nc._read_creds_user_jwt(str(path))).decode().strip() == token
    seed = bytes(nc._read_creds_user_nkey(str(path)))
    assert nkeys.from_seed(seed).public_key.decode() == user.public_key


def test_creds_rejects_non_user_material() -> None:
    acct = generate(Role.ACCOUNT)
    op = generate(Role.OPERATOR)
    acct_jwt = jwt.encode(subject=acct.public_key, name="a", nats={"type": "account"}, signer=op)
    with pytest.raises(CredsError):
        format_creds(acct_jwt, acct.seed)
    user = generate(Role.USER)
    with pytest.raises(CredsError):
        format_creds(_user_jwt(user), acct.seed)
    with pytest.raises(CredsError):
        parse_creds("not a creds file")


def test_keys_are_interoperable_with_nkeys_package() -> None:
    for role in Role:
        key = generate(role)
        assert key.public_key.startswith(role.letter)
        theirs = nkeys.from_seed(key.seed.reveal())
        assert theirs.public_key.decode() == key.public_key
        assert from_seed(key.seed).public_key == key.public_key
        sig = key.sign(b"nonce")
        assert theirs.verify(b"nonce", sig)
        assert verify(key.public_key, b"nonce", sig)
        assert not verify(key.public_key, b"nonce!", sig)


def test_bad_seeds_and_keys_are_rejected_without_echoing_them() -> None:
    seed = generate(Role.USER).seed.reveal().decode()
    broken = seed[:-3] + ("AAA" if not seed.endswith("AAA") else "BBB")
    with pytest.raises(KeyError_) as err:
        from_seed(broken)
    assert broken not in str(err.value) and seed not in str(err.value)
    with pytest.raises(KeyError_):
        from_seed(seed, Role.ACCOUNT)
    assert not verify("UNOTAKEY", b"x", b"y")


def test_secrets_never_in_repr_str_format_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = generate(Role.USER)
    seed = key.seed.reveal().decode()
    creds = format_creds(_user_jwt(key), key.seed)
    shown = [
        repr(key),
        str(key),
        repr(key.seed),
        str(key.seed),
        f"{key.seed}",
        f"{key}",
        repr(creds),
        repr([key, key.seed, creds]),
        repr({"k": key}),
    ]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("issued %s %s %r", key, key.seed, creds)
    shown.append(caplog.text)
    try:
        raise RuntimeError(f"failed for {key} with {key.seed}")
    except RuntimeError as e:
        shown.append(str(e))
    for text in shown:
        assert seed not in text
        assert seed[2:20] not in text
    assert "****" in repr(key.seed)
    with pytest.raises(TypeError):
        pickle.dumps(key.seed)
    with pytest.raises(AttributeError):
        key.seed._value = b"x"
    assert Secret(b"a") == Secret("a") and Secret(b"a") != Secret(b"b")
