"""The on-disk layout nsc uses, so `nsc describe ...` works on our store and we can adopt its.

Verified against nats-io/nsc (cmd/store/store.go, cmd/store/keys.go, home/home.go):
  <stores>/<operator>/.nsc     {"managed":false,"name":..,"kind":"operator","version":"1"}
  <stores>/<operator>/<operator>.jwt
  <stores>/<operator>/accounts/<account>/<account>.jwt
  <stores>/<operator>/accounts/<account>/users/<user>.jwt
  <keys>/keys/<first letter>/<next two letters>/<public key>.nk    the seed, nothing else
  <keys>/creds/<operator>/<account>/<user>.creds
  <keys>/.gitignore                                     ignores **/*.nk and **/*.creds
Defaults: $XDG_DATA_HOME (else ~/.local/share) + /nats/nsc/{stores,keys}, falling back to the
pre-2.x ~/.nsc/nats and ~/.nkeys when only those exist; $NKEYS_PATH overrides the keystore.
Directories are 0700 and every file 0600, as nsc writes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsc import jwt
from nsc.errors import NscError
from nsc.fsutil import PUBLIC_MODE, SECRET_MODE, atomic_write, ensure_dir, locked
from nsc.keys import NKey, from_seed
from nsc.secret import Secret

NSC_FILE = ".nsc"
STORE_VERSION = "1"
METADATA_FILE = "fleetctl.json"  # ours; nsc ignores files it does not know at the root
_GITIGNORE = "# ignore all nk files \n**/*.nk\n\n# ignore all creds files\n**/*.creds\n"
_RESTORE = "restore it from the file `fleetctl creds backup` wrote"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class StoreError(NscError, RuntimeError):
    """A missing or malformed store entry."""


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """A store file that must hold a JSON object; anything else is a StoreError naming the
    file, what is wrong with it and `fix`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise StoreError(f"{path}: is not valid JSON: {exc.msg.lower()} at {where}", fix) from None
    except UnicodeDecodeError:
        raise StoreError(f"{path}: is not UTF-8 text", fix) from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: is JSON but not an object", fix)
    return data


def check_name(name: str) -> str:
    """Names become file names: keep them to a safe, portable alphabet."""
    if not _SAFE_NAME.fullmatch(name) or name.endswith(".jwt"):
        raise StoreError(f"{name!r} is not a valid name (letters, digits, '_', '.', '-')")
    return name


@dataclass(frozen=True)
class NscDirs:
    """Where the stores and the keystore live (nsc's `--data-dir` and `--keystore-dir`)."""

    stores: Path
    keys: Path

    @classmethod
    def default(cls, env: Mapping[str, str] | None = None, home: Path | None = None) -> NscDirs:
        """nsc's own defaults, honouring XDG_DATA_HOME and NKEYS_PATH as nsc does."""
        env = os.environ if env is None else env
        home = Path.home() if home is None else home
        data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")

        def data_home(sub: str, old: Path) -> Path:
            new = data / "nats" / "nsc" / sub
            return old if not new.exists() and old.exists() else new

        stores = data_home("stores", home / ".nsc" / "nats")
        keys = Path(env["NKEYS_PATH"]).expanduser() if env.get("NKEYS_PATH") else None
        return cls(stores, keys or data_home("keys", home / ".nkeys"))

    @classmethod
    def under(cls, root: Path) -> NscDirs:
        """A self-contained pair under one directory (tests, or a caller-chosen path)."""
        return cls(root / "stores", root / "keys")


def _marker(operator: str) -> str:
    info = {"managed": False, "name": operator, "kind": "operator", "version": STORE_VERSION}
    return json.dumps(info, separators=(",", ":"))


class KeyStore:
    """nsc's keystore: seeds sharded by public key, creds by operator/account/user."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key_path(self, public_key: str) -> Path:
        return self.root / "keys" / public_key[0] / public_key[1:3] / f"{public_key}.nk"

    def creds_path(self, operator: str, account: str, user: str) -> Path:
        return self.root / "creds" / operator / account / f"{user}.creds"

    def _prepare(self) -> None:
        ensure_dir(self.root / "keys")
        ensure_dir(self.root / "creds")
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            atomic_write(ignore, _GITIGNORE, SECRET_MODE)

    def store(self, key: NKey) -> Path:
        """Write the seed (0600). Like nsc, refuses to overwrite a different seed."""
        path = self.key_path(key.public_key)
        if path.exists():
            if Secret(path.read_bytes().strip()) != key.seed:
                raise StoreError(f"{path} already exists and holds a different seed")
            return path
        if not (self.root / ".gitignore").exists():
            self._prepare()
        return atomic_write(path, key.seed, SECRET_MODE)

    def has(self, public_key: str) -> bool:
        return self.key_path(public_key).exists()

    def load(self, public_key: str) -> NKey:
        path = self.key_path(public_key)
        try:
            key = from_seed(Secret(path.read_bytes()))
        except FileNotFoundError:
            raise StoreError(f"no seed for {public_key} in {self.root}") from None
        if key.public_key != public_key:
            raise StoreError(f"{path} holds the seed of another key")
        return key

    def remove(self, public_key: str) -> None:
        path = self.key_path(public_key)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()

    def write_creds(self, operator: str, account: str, user: str, contents: Secret) -> Path:
        if not (self.root / ".gitignore").exists():
            self._prepare()
        return atomic_write(self.creds_path(operator, account, user), contents, SECRET_MODE)


class OperatorStore:
    """One operator's directory in the stores dir: the JWTs and the `.nsc` marker."""

    def __init__(self, stores: Path, operator: str) -> None:
        self.name = check_name(operator)
        self.dir = stores / operator

    # creation and loading
    @classmethod
    def create(cls, stores: Path, operator: str, operator_jwt: str) -> OperatorStore:
        s = cls(stores, operator)
        if s.dir.exists() and any(s.dir.iterdir()):
            raise StoreError(f"operator {operator!r} already exists in {stores}")
        ensure_dir(s.dir / "accounts")
        atomic_write(s.dir / NSC_FILE, _marker(operator), PUBLIC_MODE)
        s.write_operator(operator_jwt)
        return s

    @classmethod
    def load(cls, stores: Path, operator: str) -> OperatorStore:
        s = cls(stores, operator)
        marker = s.dir / NSC_FILE
        if not marker.exists():
            raise StoreError(f"{s.dir} is not an nsc operator store (no {NSC_FILE})")
        info = read_json_object(marker, f"write it as nsc does: {_marker(operator)}")
        if info.get("kind") != "operator" or info.get("name") != operator:
            raise StoreError(f"{marker} describes {info.get('kind')} {info.get('name')!r}")
        return s

    @staticmethod
    def operators(stores: Path) -> list[str]:
        if not stores.is_dir():
            return []
        return sorted(p.name for p in stores.iterdir() if (p / NSC_FILE).exists())

    # JWTs
    def _read(self, path: Path, what: str) -> str:
        """A stored JWT, checked to decode, so a broken one is an error naming its file."""
        try:
            token = path.read_text(encoding="utf-8").strip()
            jwt.decode(token)
        except FileNotFoundError:
            raise StoreError(f"{what} does not exist ({path})") from None
        except UnicodeDecodeError:
            raise StoreError(f"{path}: is not UTF-8 text", _RESTORE) from None
        except jwt.JwtError as exc:
            raise StoreError(f"{path}: {exc}", _RESTORE) from None
        return token

    def operator_path(self) -> Path:
        return self.dir / f"{self.name}.jwt"

    def account_path(self, account: str) -> Path:
        return self.dir / "accounts" / account / f"{check_name(account)}.jwt"

    def user_path(self, account: str, user: str) -> Path:
        return self.dir / "accounts" / account / "users" / f"{check_name(user)}.jwt"

    def write_operator(self, token: str) -> None:
        atomic_write(self.operator_path(), token, PUBLIC_MODE)

    def read_operator(self) -> str:
        return self._read(self.operator_path(), f"operator {self.name}")

    def write_account(self, account: str, token: str) -> None:
        atomic_write(self.account_path(account), token, PUBLIC_MODE)

    def read_account(self, account: str) -> str:
        return self._read(self.account_path(account), f"account {account}")

    def accounts(self) -> list[str]:
        root = self.dir / "accounts"
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / f"{p.name}.jwt").exists())

    def write_user(self, account: str, user: str, token: str) -> None:
        atomic_write(self.user_path(account, user), token, PUBLIC_MODE)

    def read_user(self, account: str, user: str) -> str:
        return self._read(self.user_path(account, user), f"user {user} in account {account}")

    def users(self, account: str) -> list[str]:
        root = self.dir / "accounts" / account / "users"
        if not root.is_dir():
            return []
        return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".jwt"))

    def delete_user(self, account: str, user: str) -> None:
        self.user_path(account, user).unlink(missing_ok=True)

    # our metadata
    def metadata(self) -> dict[str, Any]:
        path = self.dir / METADATA_FILE
        if not path.exists():
            return {}
        return read_json_object(
            path,
            f"{_RESTORE}; it holds pending rotations",
        )

    def update_metadata(self, **changes: Any) -> dict[str, Any]:
        with self.locked():
            data = self.metadata() | changes
            text = json.dumps(data, indent=2, sort_keys=True)
            atomic_write(self.dir / METADATA_FILE, text, 0o600)
        return data

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The store's lock, around every read-modify-write (fsutil.locked): two revocations
        at once must both end up in the account JWT."""
        return locked(self.dir)
