"""Checks of a store and keystore that nothing else would notice until it hurts.

A directory others can enter or a seed others can read leaks a key without any error; a
damaged .creds file or a signing-key file holding another key's seed fails only when it is
used (a worker cannot connect; a rotation breaks). Each `Problem` names the path, what is
wrong and the command that fixes it. Nothing here quotes a seed.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from nsc import jwt
from nsc.authority import Authority, UserRecord
from nsc.creds import CredsError, parse_creds
from nsc.errors import NscError
from nsc.keys import from_seed
from nsc.secret import Secret


@dataclass(frozen=True)
class Problem:
    path: Path
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}; fix: {self.fix}"


def mode_problems(roots: Iterable[Path]) -> list[Problem]:
    """Directories must be 0700 and files 0600 (as nsc writes them): one problem per root
    with any group or other permission bits under it, naming the first few paths."""
    found: list[Problem] = []
    for root in roots:
        loose = [f"{p} ({m:04o})" for p, m in _loose_modes(root)]
        if loose:
            shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
            found.append(
                Problem(
                    root,
                    f"other users may read or change keys here: {shown}",
                    f"chmod -R go-rwx {shlex.quote(str(root))}",
                )
            )
    return found


def _loose_modes(root: Path) -> Iterator[tuple[Path, int]]:
    if not root.is_dir():
        return
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for path in [Path(top), *(Path(top) / f for f in sorted(files))]:
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            mode = stat.S_IMODE(st.st_mode)
            if not stat.S_ISLNK(st.st_mode) and mode & 0o077:
                yield path, mode


def signing_key_problems(authority: Authority) -> list[Problem]:
    """Every operator and account seed file must hold the seed of the key it is named for."""
    found = []
    for public_key in sorted(set(authority.operator_and_account_keys())):
        path = authority.keystore.key_path(public_key)
        if not path.exists():
            continue
        try:
            holds = from_seed(Secret(path.read_bytes())).public_key
        except (NscError, OSError):
            holds = None
        if holds != public_key:
            what = "is not a seed" if holds is None else "holds the seed of another key"
            found.append(Problem(path, what, "restore it from your backup (creds backup)"))
    return found


def creds_problem(
    authority: Authority, user: str, account: str | None = None, record: UserRecord | None = None
) -> str | None:
    """Why the user's .creds file is unusable (None: it holds the stored JWT and its seed).
    With the user's `record` (from `list_users`, which has read the store already) the JWT is
    compared by key and issue time instead of being read again: a plan checks every worker."""
    path = authority.creds_path(user, account)
    try:
        token, seed = parse_creds(Secret(path.read_bytes()))
        public_key = from_seed(seed).public_key
        claims = jwt.decode(token).claims
    except FileNotFoundError:
        return "the .creds file is missing"
    except (CredsError, NscError, UnicodeDecodeError, ValueError):
        return "the .creds file is damaged"
    if record is not None:
        same = (claims.get("sub"), int(claims.get("iat", 0))) == (
            record.public_key,
            record.issued_at,
        )
    else:
        same = token == authority.store.read_user(account or authority.services_account, user)
    if not same:
        return "the .creds file holds another JWT than the store"
    if claims.get("sub") != public_key:
        return "the seed in the .creds file does not match its JWT"
    return None


def check(authority: Authority, users: Mapping[str, str] | None = None) -> list[Problem]:
    """Modes of the store and keystore, the signing-key seeds, and the .creds of `users`
    (user name -> the command that re-issues it)."""
    found = mode_problems([authority.dirs.stores, authority.keystore.root])
    found += signing_key_problems(authority)
    for user, fix in (users or {}).items():
        why = creds_problem(authority, user)
        if why is not None:
            found.append(Problem(authority.creds_path(user), why, fix))
    return found
