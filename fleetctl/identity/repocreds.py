"""The repositories' credentials and copied files, read from the machine running fleetctl.

fleet.yaml names the files (`repos.<name>.credentials`, `copy`); apply ships their contents
to each host with a worker that uses the repository, readable by root and those workers only
(fleetctl/reconcile/desired/repos.py). Here they are read and checked once, before anything
is planned, so a missing file, a key with a passphrase or a token file anyone may read is
one clear error (`error: FILE: what (fix)`) and nothing is touched. Their contents never
reach a message, a plan or a log.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from fleetctl.config.model import Fleet, Repo
from fleetctl.errors import LocalFileError

# The variables a token env file may hold the token in, the first found winning.
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN", "GIT_TOKEN")
# Each file travels in the host agent's request: a copied file is a config, not a dataset.
COPY_MAX_BYTES = 1024 * 1024
_TOKEN = re.compile(rb"[A-Za-z0-9_.~+/=-]{8,1024}")


@dataclass(frozen=True)
class RepoSecrets:
    """What a repository ships besides its settings: the deploy key, the token alone (its
    env file's value, one line), and each `copy` file, in fleet.yaml's order."""

    deploy_key: bytes | None = field(default=None, repr=False)
    token: bytes | None = field(default=None, repr=False)
    copies: tuple[bytes, ...] = field(default=(), repr=False)


def used(fleet: Fleet) -> list[Repo]:
    """The repositories some enabled worker uses: only theirs are read and shipped."""
    names = {name for w in fleet.workers if w.enabled for name in w.repos}
    return [r for name, r in fleet.repos.items() if name in names]


def gather(fleet: Fleet) -> dict[str, RepoSecrets]:
    return {repo.name: read(repo) for repo in used(fleet)}


def read(repo: Repo) -> RepoSecrets:
    key = _deploy_key(repo, repo.deploy_key) if repo.deploy_key else None
    token = _token(repo, repo.token) if repo.token else None
    copies = tuple(_copy(repo, c.source) for c in repo.copy)
    return RepoSecrets(key, token, copies)


def _secret_bytes(repo: Repo, path: Path, what: str) -> bytes:
    """A credential's bytes, from a file only its owner may read (as ssh requires of keys)."""
    where = f"{what} of repository {repo.name!r} (credentials: in fleet.yaml)"
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise LocalFileError(path, f"is not a file; it should hold the {where}", "fix the path")
        if st.st_mode & 0o077:
            raise LocalFileError(
                path,
                f"may be read by others (mode {stat.S_IMODE(st.st_mode):04o}); it holds the "
                f"{where}",
                f"chmod 600 {path}",
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise LocalFileError(
            path,
            f"does not exist; it should hold the {where}",
            "create it, or correct the path in fleet.yaml",
        ) from None
    except PermissionError:
        raise LocalFileError(
            path,
            f"cannot be read; it holds the {where}",
            "run fleetctl as its owner, or fix its owner",
        ) from None


def _deploy_key(repo: Repo, path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data = _secret_bytes(repo, path, "deploy key")
    fix = f"write the private key there: ssh-keygen -t ed25519 -N '' -f {path}"
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            serialization.load_ssh_private_key(data, password=None)
        else:
            serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise LocalFileError(
            path,
            f"the deploy key of repository {repo.name!r} has a passphrase: the hosts' git "
            "could not use it unattended",
            f"remove it: ssh-keygen -p -N '' -f {path}",
        ) from None
    except Exception:  # ValueError, or another of cryptography's kinds for what is no key
        raise LocalFileError(
            path, f"is not a private key (the deploy key of repository {repo.name!r})", fix
        ) from None
    return data


def _token(repo: Repo, path: Path) -> bytes:
    data = _secret_bytes(repo, path, "token")
    names = ", ".join(TOKEN_VARIABLES)
    values: dict[str, bytes] = {}
    for raw in data.splitlines():
        line = raw.strip()
        if not line or line.startswith((b"#", b";")) or b"=" not in line:
            continue
        key, _, value = line.partition(b"=")
        value = value.strip()
        if len(value) >= 2 and value[:1] == value[-1:] and value[:1] in (b"'", b'"'):
            value = value[1:-1]
        values[key.strip().decode("ascii", "replace")] = value
    token = next((values[n] for n in TOKEN_VARIABLES if n in values), None)
    if token is None:
        raise LocalFileError(
            path,
            f"holds none of {names} (the token of repository {repo.name!r})",
            "write a line GITHUB_TOKEN=<token> in it",
        )
    if not _TOKEN.fullmatch(token):
        raise LocalFileError(
            path,
            f"the token of repository {repo.name!r} is not a plain token (8 to 1024 letters, "
            "digits and - _ . ~ + / =)",
            "write the token alone after GITHUB_TOKEN=, without spaces",
        )
    return token + b"\n"


def _copy(repo: Repo, path: Path) -> bytes:
    where = f"a file repository {repo.name!r} copies into each worktree (copy: in fleet.yaml)"
    try:
        if not path.is_file():
            raise LocalFileError(
                path, f"is not a file; it is {where}", "create it, or fix the path"
            )
        if path.stat().st_size > COPY_MAX_BYTES:
            raise LocalFileError(
                path,
                f"is larger than 1 MiB; it is {where}",
                "copy a smaller file, or put it in git",
            )
        return path.read_bytes()
    except PermissionError:
        raise LocalFileError(path, f"cannot be read; it is {where}", "fix its owner") from None
