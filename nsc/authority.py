"""The operator, its accounts and their users: create or adopt, issue, revoke, rotate, list.

Hierarchy (JWT v2, operator mode):
  operator (identity key, kept for backup only) --signing key--> accounts SYS and Services
  account  (identity key, kept for backup only) --signing key--> users (issuer_account set)
Everything lives in an nsc-compatible store (`nsc.store`); seeds only ever as `Secret`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsc import jwt
from nsc.claims import JetStreamLimits, account_limits, account_nats, operator_nats, user_nats
from nsc.creds import format_creds
from nsc.errors import NscError
from nsc.keys import NKey, Role, generate
from nsc.permissions import Permissions
from nsc.serverconfig import mem_resolver_config
from nsc.store import KeyStore, NscDirs, OperatorStore, check_name

DEFAULT_OPERATOR = "fleet"
SYSTEM_ACCOUNT = "SYS"
SERVICES_ACCOUNT = "Services"
# JetStream must be enabled per account: both storages 0 means "JetStream not enabled".
DEFAULT_JETSTREAM = JetStreamLimits(mem_storage=-1, disk_storage=-1, streams=-1, consumer=-1)


@contextlib.contextmanager
def _claims_of(path: Path) -> Iterator[None]:
    """Claims of the wrong shape in a stored JWT are an error naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        raise jwt.JwtError(
            f"{path}: is a JWT whose claims are not what nsc writes",
            "restore it from the file `fleetctl creds backup` wrote",
        ) from None


class AuthorityError(NscError, RuntimeError):
    """A lifecycle request that cannot be honoured (unknown user, missing signing key, ...)."""


@dataclass(frozen=True)
class IssuedUser:
    name: str
    account: str
    public_key: str
    jwt: str
    creds_path: Path
    issued_at: int
    expires_at: int | None


@dataclass(frozen=True)
class UserRecord:
    """One row of `list_users`: what an operator needs to audit credentials."""

    name: str
    account: str
    public_key: str
    issued_at: int
    expires_at: int | None
    revoked: bool
    tags: tuple[str, ...]
    creds_path: Path

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        t = time.time() if now is None else now
        return self.expires_at is not None and self.expires_at - t <= seconds


@dataclass(frozen=True)
class Account:
    name: str
    public_key: str
    signer: NKey  # a signing key of the account if its seed is here, else its identity key


def _now() -> int:
    return int(time.time())


class Authority:
    """An operator store plus keystore, with the keys needed to sign loaded once."""

    def __init__(self, dirs: NscDirs, store: OperatorStore, operator_signer: NKey) -> None:
        self.dirs = dirs
        self.store = store
        self.keystore = KeyStore(dirs.keys)
        self._operator_signer = operator_signer
        self._accounts: dict[str, Account] = {}
        self._services: str | None = None

    def __repr__(self) -> str:
        return f"Authority(operator={self.store.name!r}, stores={self.dirs.stores})"

    # ---- create / adopt -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        dirs: NscDirs | None = None,
        operator: str = DEFAULT_OPERATOR,
        *,
        system_account: str = SYSTEM_ACCOUNT,
        services_account: str = SERVICES_ACCOUNT,
        jetstream: JetStreamLimits = DEFAULT_JETSTREAM,
    ) -> Authority:
        """New operator (identity + signing key), SYS and a JetStream-enabled services account."""
        dirs = dirs or NscDirs.default()
        check_name(operator)
        if (dirs.stores / operator).exists() and any((dirs.stores / operator).iterdir()):
            raise AuthorityError(f"operator {operator!r} already exists in {dirs.stores}")
        if not jetstream.enabled:
            raise AuthorityError("the services account needs mem_storage or disk_storage != 0")
        keystore = KeyStore(dirs.keys)
        op_id, op_sk = generate(Role.OPERATOR), generate(Role.OPERATOR)
        sys_id, sys_sk = generate(Role.ACCOUNT), generate(Role.ACCOUNT)
        svc_id, svc_sk = generate(Role.ACCOUNT), generate(Role.ACCOUNT)
        for key in (op_id, op_sk, sys_id, sys_sk, svc_id, svc_sk):
            keystore.store(key)
        op_jwt = jwt.encode(
            subject=op_id.public_key,
            name=operator,
            nats=operator_nats(signing_keys=[op_sk.public_key], system_account=sys_id.public_key),
            signer=op_id,
        )
        store = OperatorStore.create(dirs.stores, operator, op_jwt)
        for name, ident, sk, js in (
            (system_account, sys_id, sys_sk, JetStreamLimits(0, 0, 0, 0)),
            (services_account, svc_id, svc_sk, jetstream),
        ):
            token = jwt.encode(
                subject=ident.public_key,
                name=name,
                nats=account_nats(signing_keys=[sk.public_key], jetstream=js),
                signer=op_sk,
            )
            store.write_account(name, token)
        store.update_metadata(keys_changed_at=_now(), services_account=services_account)
        return cls(dirs, store, op_sk)

    @classmethod
    def load(cls, dirs: NscDirs | None = None, operator: str = DEFAULT_OPERATOR) -> Authority:
        """Adopt an existing store (ours or nsc's): prefer a signing key whose seed is here."""
        dirs = dirs or NscDirs.default()
        store = OperatorStore.load(dirs.stores, operator)
        claims = jwt.verify_token(store.read_operator()).claims
        keystore = KeyStore(dirs.keys)
        candidates = [*claims.get("nats", {}).get("signing_keys", []), claims["sub"]]
        signer = next((keystore.load(k) for k in candidates if keystore.has(k)), None)
        if signer is None:
            raise AuthorityError(f"no operator key of {operator!r} found in {dirs.keys}")
        return cls(dirs, store, signer)

    @classmethod
    def open(cls, dirs: NscDirs | None = None, operator: str = DEFAULT_OPERATOR) -> Authority:
        """Load the operator if it exists, else create it with the defaults."""
        dirs = dirs or NscDirs.default()
        if operator in OperatorStore.operators(dirs.stores):
            return cls.load(dirs, operator)
        return cls.create(dirs, operator)

    # ---- reading --------------------------------------------------------------------------
    @property
    def operator_jwt(self) -> str:
        return self.store.read_operator()

    @property
    def operator_claims(self) -> dict[str, Any]:
        return jwt.decode(self.operator_jwt).claims

    @property
    def system_account_key(self) -> str:
        key = str(self.operator_claims.get("nats", {}).get("system_account", ""))
        if not key:
            raise AuthorityError("the operator JWT names no system account")
        return key

    @property
    def system_account(self) -> str:
        return self._name_of(self.system_account_key)

    @property
    def services_account(self) -> str:
        """The account users go to by default (recorded at creation; `Services` if adopted)."""
        if self._services is None:
            self._services = str(self.store.metadata().get("services_account", SERVICES_ACCOUNT))
        return self._services

    def _name_of(self, account_key: str) -> str:
        for name in self.store.accounts():
            if jwt.decode(self.store.read_account(name)).claims.get("sub") == account_key:
                return name
        raise AuthorityError(f"account {account_key} is not in the store")

    def account_jwt(self, account: str) -> str:
        return self.store.read_account(account)

    def account(self, name: str) -> Account:
        if name not in self._accounts:
            claims = jwt.decode(self.store.read_account(name)).claims
            keys = [*claims.get("nats", {}).get("signing_keys", []), claims["sub"]]
            keys = [k if isinstance(k, str) else k.get("key", "") for k in keys]
            signer = next((self.keystore.load(k) for k in keys if self.keystore.has(k)), None)
            if signer is None:
                raise AuthorityError(f"no key of account {name!r} found in {self.dirs.keys}")
            self._accounts[name] = Account(name, str(claims["sub"]), signer)
        return self._accounts[name]

    def server_config(self, replacing: Mapping[str, str] | None = None) -> str:
        """Auth part of the broker config, equal to nsc's --mem-resolver output;
        `replacing` maps account names to JWTs to use instead of the stored ones."""
        swap = replacing or {}
        tokens = [swap.get(a) or self.store.read_account(a) for a in self.store.accounts()]
        return mem_resolver_config(self.operator_jwt, tokens, self.system_account_key)

    # ---- users ----------------------------------------------------------------------------
    def creds_path(self, user: str, account: str | None = None) -> Path:
        return self.keystore.creds_path(self.store.name, account or self.services_account, user)

    def issue_user(
        self,
        name: str,
        permissions: Permissions,
        *,
        account: str | None = None,
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> IssuedUser:
        """New key + JWT signed by the account's signing key, written with its .creds (0600).

        Re-issuing an existing name replaces the JWT but not any revocation: use
        `rotate_user` to replace a live user's key.
        """
        acct = self.account(account or self.services_account)
        check_name(name)
        key = generate(Role.USER)
        now = _now()
        expires = now + int(ttl) if ttl else 0
        token = jwt.encode(
            subject=key.public_key,
            name=name,
            nats=user_nats(
                permissions=permissions,
                issuer_account=acct.public_key if acct.signer.public_key != acct.public_key else "",
                tags=tags,
            ),
            signer=acct.signer,
            expires=expires,
            issued_at=now,
        )
        self.keystore.store(key)
        self.store.write_user(acct.name, name, token)
        path = self.keystore.write_creds(
            self.store.name, acct.name, name, format_creds(token, key.seed, check=False)
        )
        return IssuedUser(name, acct.name, key.public_key, token, path, now, expires or None)

    def rewrite_creds(self, name: str, account: str | None = None) -> bool:
        """Write the user's .creds again from the stored JWT and the seed in the keystore
        (a damaged .creds file); False if the keystore lacks that seed or holds another."""
        acct = account or self.services_account
        token = self.store.read_user(acct, name)
        public_key = str(jwt.decode(token).claims["sub"])
        if not self.keystore.has(public_key):
            return False
        try:
            key = self.keystore.load(public_key)
        except NscError:
            return False
        self.keystore.write_creds(self.store.name, acct, name, format_creds(token, key.seed))
        return True

    def user_record(self, name: str, account: str | None = None) -> UserRecord:
        acct = account or self.services_account
        revocations = self._revocations(acct)
        return self._record(acct, name, self.store.read_user(acct, name), revocations)

    def list_users(self, account: str | None = None) -> list[UserRecord]:
        """Every user of the account (default: the services account), revoked ones included."""
        acct = account or self.services_account
        revocations = self._revocations(acct)
        return [
            self._record(acct, u, self.store.read_user(acct, u), revocations)
            for u in self.store.users(acct)
        ]

    def expiring(self, within_seconds: float, account: str | None = None) -> list[UserRecord]:
        """Users not revoked whose JWT expires within the window (or already has)."""
        return [
            r
            for r in self.list_users(account)
            if not r.revoked and r.expires_within(within_seconds)
        ]

    def _record(self, account: str, name: str, token: str, revs: dict[str, int]) -> UserRecord:
        c = jwt.decode(token).claims
        with _claims_of(self.store.user_path(account, name)):
            pub, iat = str(c["sub"]), int(c.get("iat", 0))
            revoked = (pub in revs and revs[pub] >= iat) or ("*" in revs and revs["*"] >= iat)
            return UserRecord(
                name=name,
                account=account,
                public_key=pub,
                issued_at=iat,
                expires_at=int(c["exp"]) if c.get("exp") else None,
                revoked=revoked,
                tags=tuple(c.get("nats", {}).get("tags") or ()),
                creds_path=self.keystore.creds_path(self.store.name, account, name),
            )

    # ---- revocation and rotation -----------------------------------------------------------
    def _revocations(self, account: str) -> dict[str, int]:
        nats = jwt.decode(self.store.read_account(account)).claims.get("nats", {})
        with _claims_of(self.store.account_path(account)):
            return {str(k): int(v) for k, v in (nats.get("revocations") or {}).items()}

    def revoke_keys(
        self,
        account: str,
        public_keys: Sequence[tuple[str, int]],
        *,
        issued_at: int | None = None,
        write: bool = True,
    ) -> str:
        """Add (user key, at) revocations to the account JWT; returns the re-signed JWT.

        The server drops user JWTs of that key with iat <= at (one-second resolution), so
        `at` is never earlier than the revoked JWT's own iat + 1. With a fixed `issued_at`
        the JWT is deterministic, so a plan can show it (`write=False`) and apply can later
        store exactly that JWT.
        """
        with self.store.locked() if write else contextlib.nullcontext():
            return self._revoke_keys(account, public_keys, issued_at, write)

    def _revoke_keys(
        self,
        account: str,
        public_keys: Sequence[tuple[str, int]],
        issued_at: int | None,
        write: bool,
    ) -> str:
        d = jwt.verify_token(self.store.read_account(account), check_time=False)
        nats = dict(d.claims.get("nats", {}))
        revs = {str(k): int(v) for k, v in (nats.get("revocations") or {}).items()}
        for pub, at in public_keys:
            if Role.of_public_key(pub) is not Role.USER:
                raise AuthorityError(f"{pub} is not a user key")
            revs[pub] = max(revs.get(pub, 0), at)
        nats["revocations"] = dict(sorted(revs.items()))
        nats.pop("version", None)
        token = jwt.encode(
            subject=str(d.claims["sub"]),
            name=str(d.claims.get("name", account)),
            nats=nats,
            signer=self._operator_signer,
            expires=int(d.claims.get("exp") or 0),
            issued_at=issued_at,
        )
        if write:
            self.store.write_account(account, token)
        return token

    def with_jetstream_limits(
        self, account: str, limits: JetStreamLimits, *, base: str | None = None
    ) -> str:
        """The account JWT (`base`, default the stored one) with these JetStream limits.

        Unchanged limits give `base` itself; otherwise it is re-signed with `iat` one second
        after `base`'s, so the same inputs always give the same JWT (a plan can show it and
        apply send it, with nothing stored) and the broker takes it as the newer one."""
        if not limits.enabled:
            raise AuthorityError(f"account {account!r} needs mem_storage or disk_storage != 0")
        token = base or self.store.read_account(account)
        d = jwt.verify_token(token, check_time=False)
        nats = dict(d.claims.get("nats", {}))
        wanted = {**(nats.get("limits") or {})}
        for key in ("mem_storage", "disk_storage", "streams", "consumer", "max_ack_pending"):
            wanted.pop(key, None)
        for key in ("mem_max_stream_bytes", "disk_max_stream_bytes", "max_bytes_required"):
            wanted.pop(key, None)
        wanted |= {k: v for k, v in account_limits(limits).items() if k not in wanted}
        if wanted == nats.get("limits"):
            return token
        nats["limits"] = wanted
        nats.pop("version", None)
        return jwt.encode(
            subject=str(d.claims["sub"]),
            name=str(d.claims.get("name", account)),
            nats=nats,
            signer=self._operator_signer,
            expires=int(d.claims.get("exp") or 0),
            issued_at=int(d.claims.get("iat", 0)) + 1,
        )

    def revoke_user(self, name: str, account: str | None = None) -> str:
        """Revoke the user's current key (by public key, so a rotated successor is unaffected)."""
        acct = account or self.services_account
        with self.store.locked():
            claims = jwt.decode(self.store.read_user(acct, name)).claims
            at = max(_now(), int(claims.get("iat", 0)) + 1)
            token = self.revoke_keys(acct, [(str(claims["sub"]), at)])
            self.keystore.remove(str(claims["sub"]))
            self.keystore.creds_path(self.store.name, acct, name).unlink(missing_ok=True)
        return token

    def rotate_user(
        self,
        name: str,
        permissions: Permissions | None = None,
        *,
        account: str | None = None,
        ttl: float | None = None,
        revoke_old: bool = True,
    ) -> tuple[IssuedUser, str | None]:
        """Issue a new key for `name` first, then (if `revoke_old`) revoke the old key.

        Returns the new user and the re-signed account JWT (None if the old key is kept, for
        a staged rollout: deploy the new creds, then call `revoke_keys`).
        """
        acct = account or self.services_account
        with self.store.locked():
            old = jwt.decode(self.store.read_user(acct, name)).claims
            nats = old.get("nats", {})
            perms = permissions or Permissions.from_jwt(nats)
            if ttl is None and old.get("exp"):
                ttl = int(old["exp"]) - int(old.get("iat", 0))
            tags = nats.get("tags") or ()
            new = self.issue_user(name, perms, account=acct, ttl=ttl, tags=tags)
            if not revoke_old:
                return new, None
            at = max(_now(), int(old.get("iat", 0)) + 1)
            token = self.revoke_keys(acct, [(str(old["sub"]), at)])
            self.keystore.remove(str(old["sub"]))
        return new, token

    # ---- iteration helpers ----------------------------------------------------------------
    def operator_and_account_keys(self) -> Iterator[str]:
        """Public keys whose seeds a backup must hold: operator and accounts, with signers."""
        oc = self.operator_claims
        yield str(oc["sub"])
        yield from (str(k) for k in oc.get("nats", {}).get("signing_keys", []))
        for name in self.store.accounts():
            c = jwt.decode(self.store.read_account(name)).claims
            yield str(c["sub"])
            for k in c.get("nats", {}).get("signing_keys", []):
                yield str(k if isinstance(k, str) else k.get("key", ""))
