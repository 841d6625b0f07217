"""Store layout and modes, adopting a store in nsc's layout, issue/revoke/rotate/list/backup."""

from __future__ import annotations

import json
import stat
import tarfile
import time
from pathlib import Path

import pytest

from fleetctl.bus.names import NatsNames
from fleetctl.identity import natsaccess as na
from nsc import jwt
from nsc.authority import Authority, AuthorityError
from nsc.backup import backup, backup_status
from nsc.claims import JetStreamLimits, account_nats, operator_nats, user_nats
from nsc.creds import parse_creds
from nsc.keys import Role, from_seed, generate
from nsc.permissions import Permissions
from nsc.serverconfig import ConfigError, mem_resolver_config
from nsc.store import NscDirs, StoreError

NAMES = NatsNames("af")


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(NscDirs.under(tmp_path / "nsc"))


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_default_dirs_follow_nsc(tmp_path: Path) -> None:
    home = tmp_path / "home"
    d = NscDirs.default(env={}, home=home)
    assert d.stores == home / ".local/share/nats/nsc/stores"
    assert d.keys == home / ".local/share/nats/nsc/keys"
    d = NscDirs.default(env={"XDG_DATA_HOME": "/x", "NKEYS_PATH": "/k"}, home=home)
    assert d == NscDirs(Path("/x/nats/nsc/stores"), Path("/k"))
    (home / ".nkeys").mkdir(parents=True)  # pre-2.x keystore and no new one: nsc keeps using it
    assert NscDirs.default(env={}, home=home).keys == home / ".nkeys"


def test_create_writes_nsc_layout_with_private_modes(authority: Authority) -> None:
    user = authority.issue_user("worker-w1", na.worker_permissions(NAMES, "w1"))
    stores, keys = authority.dirs.stores, authority.dirs.keys
    op = stores / "fleet"
    assert json.loads((op / ".nsc").read_text()) == {
        "managed": False,
        "name": "fleet",
        "kind": "operator",
        "version": "1",
    }
    for rel in ("fleet.jwt", "accounts/SYS/SYS.jwt", "accounts/Services/Services.jwt"):
        assert (op / rel).is_file(), rel
    assert (op / "accounts/Services/users/worker-w1.jwt").read_text() == user.jwt
    pub = user.public_key
    assert (keys / "keys" / "U" / pub[1:3] / f"{pub}.nk").is_file()
    assert user.creds_path == keys / "creds/fleet/Services/worker-w1.creds"
    assert "**/*.nk" in (keys / ".gitignore").read_text()
    for p in [*stores.rglob("*"), *keys.rglob("*"), stores, keys]:
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), p
    assert not list(stores.rglob("*.tmp")) and not list(keys.rglob(".*.tmp"))


def test_hierarchy_and_claims(authority: Authority) -> None:
    oc = jwt.verify_token(authority.operator_jwt).claims
    assert oc["iss"] == oc["sub"] and oc["sub"].startswith("O")
    (op_sk,) = oc["nats"]["signing_keys"]
    assert oc["nats"]["system_account"] == authority.system_account_key
    assert authority.system_account == "SYS"
    for name in ("SYS", "Services"):
        ac = jwt.verify_token(authority.account_jwt(name)).claims
        assert ac["iss"] == op_sk and ac["name"] == name
        assert list(ac["nats"]) == [
            "limits",
            "signing_keys",
            "default_permissions",
            "authorization",
            "type",
            "version",
        ]
    svc = jwt.decode(authority.account_jwt("Services")).claims["nats"]
    assert svc["limits"]["mem_storage"] == -1 and svc["limits"]["disk_storage"] == -1
    assert svc["limits"]["wildcards"] is True
    user = authority.issue_user("worker-w1", na.worker_permissions(NAMES, "w1"), ttl=60)
    uc = jwt.verify_token(user.jwt).claims
    assert uc["iss"] == svc["signing_keys"][0]
    assert uc["nats"]["issuer_account"] == authority.account("Services").public_key
    assert uc["exp"] == uc["iat"] + 60
    assert list(uc["nats"]) == [
        "pub",
        "sub",
        "resp",
        "subs",
        "data",
        "payload",
        "issuer_account",
        "type",
        "version",
    ]
    assert uc["nats"]["resp"] == {"max": 1, "ttl": 60_000_000_000}
    token, seed = parse_creds(user.creds_path.read_bytes())
    assert token == user.jwt and from_seed(seed).public_key == user.public_key


def test_create_refuses_existing_operator_and_disabled_jetstream(tmp_path: Path) -> None:
    dirs = NscDirs.under(tmp_path)
    Authority.create(dirs)
    with pytest.raises(AuthorityError, match="already exists"):
        Authority.create(dirs)
    with pytest.raises(AuthorityError, match="mem_storage"):
        Authority.create(dirs, "other", jetstream=JetStreamLimits(0, 0))
    assert Authority.open(dirs).store.name == "fleet"


def _write_nsc_style_store(root: Path) -> dict[str, str]:
    """A store laid out by hand the way `nsc init` + `nsc add account/user` leave it:
    no signing keys, accounts signed by the operator identity, users by the account."""
    op, sys_, app, user = (
        generate(r) for r in (Role.OPERATOR, Role.ACCOUNT, Role.ACCOUNT, Role.USER)
    )
    stores, keys = root / "stores", root / "keys"
    o = stores / "demo"
    (o / "accounts/SYS").mkdir(parents=True)
    (o / "accounts/APP/users").mkdir(parents=True)
    (o / ".nsc").write_text('{"managed":false,"name":"demo","kind":"operator","version":"1"}')
    (o / "demo.jwt").write_text(
        jwt.encode(
            subject=op.public_key,
            name="demo",
            nats=operator_nats(signing_keys=[], system_account=sys_.public_key),
            signer=op,
        )
    )
    for name, key, js in (
        ("SYS", sys_, JetStreamLimits(0, 0, 0, 0)),
        ("APP", app, JetStreamLimits()),
    ):
        (o / f"accounts/{name}/{name}.jwt").write_text(
            jwt.encode(
                subject=key.public_key,
                name=name,
                nats=account_nats(signing_keys=[], jetstream=js),
                signer=op,
            )
        )
    (o / "accounts/APP/users/alice.jwt").write_text(
        jwt.encode(
            subject=user.public_key,
            name="alice",
            nats=user_nats(permissions=Permissions(), issuer_account=""),
            signer=app,
        )
    )
    for key in (op, sys_, app, user):
        p = keys / "keys" / key.public_key[0] / key.public_key[1:3] / f"{key.public_key}.nk"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(key.seed.reveal())
    return {"op": op.public_key, "app": app.public_key, "user": user.public_key}


def test_adopt_an_existing_nsc_store(tmp_path: Path) -> None:
    keys = _write_nsc_style_store(tmp_path)
    a = Authority.load(NscDirs.under(tmp_path), "demo")
    assert a.system_account == "SYS"
    (alice,) = a.list_users("APP")
    assert (alice.name, alice.public_key, alice.revoked) == ("alice", keys["user"], False)
    bob = a.issue_user("bob", Permissions(), account="APP")
    bc = jwt.verify_token(bob.jwt).claims
    assert bc["iss"] == keys["app"] and "issuer_account" not in bc["nats"]  # no signing key
    assert [u.name for u in a.list_users("APP")] == ["alice", "bob"]
    a.revoke_user("alice", "APP")
    ac = jwt.verify_token(a.account_jwt("APP")).claims
    assert ac["iss"] == keys["op"] and keys["user"] in ac["nats"]["revocations"]
    assert "resolver_preload" in a.server_config()
    with pytest.raises(StoreError):
        Authority.load(NscDirs.under(tmp_path), "missing")


def test_issuing_users_does_not_change_server_config(authority: Authority) -> None:
    before = authority.server_config()
    for wid in ("w1", "w2", "w3"):
        authority.issue_user(na.worker_user(wid), na.worker_permissions(NAMES, wid))
    assert authority.server_config() == before


def test_revoke_by_public_key_spares_the_rotated_successor(authority: Authority) -> None:
    old = authority.issue_user("worker-w1", na.worker_permissions(NAMES, "w1"), ttl=3600)
    before = authority.server_config()
    new, account_jwt = authority.rotate_user("worker-w1")
    assert account_jwt is not None
    assert new.public_key != old.public_key
    assert new.issued_at >= old.issued_at  # possibly the same second: pitfall 7
    revs = jwt.verify_token(account_jwt).claims["nats"]["revocations"]
    assert set(revs) == {old.public_key}
    assert revs[old.public_key] >= old.issued_at + 1
    assert authority.server_config() != before and account_jwt in authority.server_config()
    (rec,) = authority.list_users()
    assert (rec.public_key, rec.revoked) == (new.public_key, False)
    assert rec.expires_at == new.issued_at + 3600  # ttl carried over
    assert not authority.keystore.has(old.public_key)  # a revoked seed is not kept
    assert jwt.decode(new.jwt).claims["nats"]["pub"] == jwt.decode(old.jwt).claims["nats"]["pub"]
    authority.revoke_user("worker-w1")
    (rec,) = authority.list_users()
    assert rec.revoked and not rec.creds_path.exists()


def test_staged_rotation_keeps_old_key_until_revoked(authority: Authority) -> None:
    old = authority.issue_user("worker-w1", Permissions())
    new, token = authority.rotate_user("worker-w1", revoke_old=False)
    assert token is None and authority.keystore.has(old.public_key)
    authority.revoke_keys("Services", [(old.public_key, int(time.time()))])
    revs = jwt.decode(authority.account_jwt("Services")).claims["nats"]["revocations"]
    assert old.public_key in revs and new.public_key not in revs
    with pytest.raises(AuthorityError):
        authority.revoke_keys("Services", [(authority.account("Services").public_key, 1)])


def test_list_and_expiring(authority: Authority) -> None:
    authority.issue_user("worker-a", Permissions(), ttl=3600)
    authority.issue_user("worker-b", Permissions(), ttl=30 * 86400)
    authority.issue_user("worker-c", Permissions())
    rows = {r.name: r for r in authority.list_users()}
    assert rows["worker-c"].expires_at is None
    assert [r.name for r in authority.expiring(7 * 86400)] == ["worker-a"]
    authority.revoke_user("worker-a")
    assert authority.expiring(7 * 86400) == []
    assert rows["worker-a"].public_key.startswith("U")


def test_backup_holds_operator_and_account_keys_only(authority: Authority, tmp_path: Path) -> None:
    user = authority.issue_user("worker-w1", Permissions())
    status = backup_status(authority)
    assert status.needed and status.last_backup_at is None
    out = tmp_path / "backups" / "nsc.tgz"
    status = backup(authority, out)
    assert not status.needed and status.last_backup_at is not None
    assert _mode(out) == 0o600
    with tarfile.open(out) as tar:
        names = tar.getnames()
        nk = [n for n in names if n.endswith(".nk")]
        assert len(nk) == 6  # operator + signing key, two accounts + their signing keys
        assert all(Path(n).name[0] in "OA" for n in nk)
        assert f"{user.public_key}.nk" not in "".join(names)
        assert "stores/fleet/fleet.jwt" in names and "stores/fleet/.nsc" in names
        assert not [n for n in names if n.endswith(".creds")]
    meta = authority.store.metadata()
    assert meta["last_backup_file"] == str(out.resolve())


def test_server_config_is_nsc_mem_resolver_format(authority: Authority) -> None:
    text = authority.server_config()
    lines = text.splitlines()
    assert lines[0] == '// Operator "fleet"'
    assert lines[1] == f"operator: {authority.operator_jwt}"
    assert f"system_account: {authority.system_account_key}" in lines
    assert "resolver: MEMORY" in lines
    start = lines.index("resolver_preload: {")
    entries = [ln.strip() for ln in lines[start + 1 :] if ln.strip().startswith("A")]
    pubs = [e.split(":")[0] for e in entries]
    assert pubs == sorted(pubs) and len(pubs) == 2
    for pub in pubs:
        name = "SYS" if pub == authority.system_account_key else "Services"
        assert f'  // Account "{name}"' in lines
    with pytest.raises(ConfigError):
        mem_resolver_config(authority.operator_jwt, [authority.account_jwt("Services")], "AX")


def test_reload_uses_the_signing_keys(authority: Authority) -> None:
    again = Authority.load(authority.dirs, "fleet")
    assert again.services_account == "Services"
    user = again.issue_user("worker-w9", Permissions())
    svc = jwt.decode(again.account_jwt("Services")).claims
    assert jwt.verify_token(user.jwt).claims["iss"] == svc["nats"]["signing_keys"][0]
    again.revoke_user("worker-w9")
    op = jwt.decode(again.operator_jwt).claims
    assert (
        jwt.verify_token(again.account_jwt("Services")).claims["iss"] in op["nats"]["signing_keys"]
    )
