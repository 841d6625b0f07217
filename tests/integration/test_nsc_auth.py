"""Who gets in: tampered, foreign, expired and revoked users are refused by a real broker."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from fleetctl.identity import natsaccess as na
from nsc import jwt
from nsc.authority import Authority
from nsc.claims import user_nats
from nsc.creds import format_creds, parse_creds
from nsc.keys import Role, generate
from nsc.permissions import Permissions
from nsc.store import NscDirs
from nsc.sysupdate import ClaimsUpdateError, claims_update, push_account_jwt
from tests.support.nscfleet import connect, fleet_server, make_fleet, try_connect

pytestmark = pytest.mark.integration


def _refused(error: str | None) -> bool:
    return error is not None and "authorization violation" in error.lower()


def test_tampered_foreign_and_expired_users_are_rejected(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1",))
    good = fleet.workers["w1"].creds_path

    # tampered: widen the permissions, keep the signature
    token, seed = parse_creds(good.read_bytes())
    h, p, s = token.split(".")
    claims = json.loads(jwt.unb64url(p))
    claims["nats"]["pub"] = {"allow": [">"]}
    claims["nats"]["sub"] = {"allow": [">"]}
    tampered = tmp_path / "tampered.creds"
    tampered.write_bytes(format_creds(f"{h}.{jwt.b64url(jwt.go_json(claims))}.{s}", seed).reveal())

    # signed by another operator's account
    other = Authority.create(NscDirs.under(tmp_path / "other"))
    foreign = other.issue_user("worker-w1", na.worker_permissions(fleet.names, "w1"))

    # expired: a genuine JWT from the right signing key, exp in the past
    acct = fleet.authority.account("Services")
    user = generate(Role.USER)
    now = int(time.time())
    nats = user_nats(permissions=Permissions(), issuer_account=acct.public_key)
    old = jwt.encode(
        subject=user.public_key,
        name="expired",
        nats=nats,
        signer=acct.signer,
        issued_at=now - 120,
        expires=now - 60,
    )
    expired = tmp_path / "expired.creds"
    expired.write_bytes(format_creds(old, user.seed).reveal())
    fresh = tmp_path / "fresh.creds"  # the same, unexpired: the control
    fresh.write_bytes(
        format_creds(
            jwt.encode(
                subject=user.public_key,
                name="fresh",
                nats=nats,
                signer=acct.signer,
                expires=now + 60,
            ),
            user.seed,
        ).reveal()
    )

    async def run(url: str) -> None:
        assert await try_connect(url, good) is None
        assert await try_connect(url, fresh) is None
        for creds in (tampered, foreign.creds_path, expired):
            assert _refused(await try_connect(url, creds)), creds.name

    with fleet_server(fleet) as srv:
        asyncio.run(run(srv.url))


def test_revocation_and_rotation_take_effect_live(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    a = fleet.authority
    w1_old, w2_old = fleet.workers["w1"], fleet.workers["w2"]
    w1_copy = tmp_path / "w1-old.creds"  # revoke_user deletes the store's creds file
    w1_copy.write_bytes(w1_old.creds_path.read_bytes())
    w2_copy = tmp_path / "w2-old.creds"
    w2_copy.write_bytes(w2_old.creds_path.read_bytes())

    async def run(url: str) -> None:
        assert await try_connect(url, w1_copy) is None
        async with connect(url, w1_old, fleet.names.inbox_prefix("w1")) as w1:
            account_jwt = a.revoke_user(na.worker_user("w1"))
            assert claims_update(account_jwt).subject.startswith("$SYS.REQ.ACCOUNT.A")
            reply = await push_account_jwt(url, fleet.system.creds_path, account_jwt)
            assert reply.get("code") == 200, reply
            for _ in range(100):  # the server drops connections of revoked users
                if w1.nc.is_closed or not w1.nc.is_connected:
                    break
                await asyncio.sleep(0.02)
            assert not w1.nc.is_connected
        assert _refused(await try_connect(url, w1_copy))
        assert await try_connect(url, w2_copy) is None

        # rotation in the same second as the old key's issue: only the old key is revoked
        new, account_jwt2 = a.rotate_user(na.worker_user("w2"))
        assert account_jwt2 is not None
        assert new.issued_at - w2_old.issued_at <= 1
        await push_account_jwt(url, fleet.system.creds_path, account_jwt2)
        assert _refused(await try_connect(url, w2_copy))
        assert await try_connect(url, new.creds_path) is None

        # the server refuses an account JWT that its operator did not sign
        foreign = Authority.create(NscDirs.under(tmp_path / "foreign"))
        forged = jwt.encode(
            subject=a.account("Services").public_key,
            name="Services",
            nats=jwt.decode(account_jwt2).claims["nats"] | {"revocations": {}},
            signer=foreign.account("Services").signer,
        )
        with pytest.raises(ClaimsUpdateError, match="refused"):
            await push_account_jwt(url, fleet.system.creds_path, forged)
        assert _refused(await try_connect(url, w2_copy))  # still revoked

        # only a system-account user may push account updates
        with pytest.raises(Exception, match="no answer"):
            await push_account_jwt(url, fleet.admin.creds_path, account_jwt2, timeout=0.5)

    with fleet_server(fleet) as srv:
        asyncio.run(run(srv.url))


def test_revocation_persists_across_restart_via_config(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("w1", "w2"))
    a = fleet.authority
    w1_copy = tmp_path / "w1-old.creds"
    w1_copy.write_bytes(fleet.workers["w1"].creds_path.read_bytes())

    with fleet_server(fleet) as srv:
        config_before = srv.config_path.read_text()
        a.revoke_user(na.worker_user("w1"))  # not pushed: the running server still has it
        assert asyncio.run(try_connect(srv.url, w1_copy)) is None
        fleet.write_config()
        assert srv.config_path.read_text() != config_before
        srv.restart()
        assert _refused(asyncio.run(try_connect(srv.url, w1_copy)))
        assert asyncio.run(try_connect(srv.url, fleet.workers["w2"].creds_path)) is None
        # a worker added later needs no config change and no restart
        config = srv.config_path.read_text()
        w3 = a.issue_user(na.worker_user("w3"), na.worker_permissions(fleet.names, "w3"))
        fleet.write_config()
        assert srv.config_path.read_text() == config
        assert asyncio.run(try_connect(srv.url, w3.creds_path)) is None
