"""Checked values of fleet.yaml's `repos:`: a repository's name, its URL, a ref, a path
inside a worktree.

Each reaches git's argv on every worker host (the mirror's fetch, a worktree's checkout), a
path on the host (`/var/lib/fleet/repos/<name>.git`) and a user name (`fleet-repo-<name>`).
So a value git could read as an option (`--upload-pack=...`), a transport that runs a command
(`ext::sh -c ...`, `fd::`), an ssh host that is an option (`-oProxyCommand=...`), a path that
leaves its directory (`../x`) or a password in a URL is refused here, with the fix, before
anything is rendered (docs/security.md, "Repositories").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator

from fleetctl.config.errors import BadValue, shown
from fleetctl.config.values import _text

# `fleet-repo-<name>` is the repository's user and group on a host: at most Linux's 32.
REPO_USER_PREFIX = "fleet-repo-"
REPO_NAME_MAX = 32 - len(REPO_USER_PREFIX)
_REPO_NAME = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{REPO_NAME_MAX - 1}}}")


def _repo_name(value: str) -> str:
    if len(value) > REPO_NAME_MAX and _REPO_NAME.fullmatch(value[:REPO_NAME_MAX]):
        raise BadValue(
            f"{shown(value)} is {len(value)} characters long",
            f"use at most {REPO_NAME_MAX}: the repository's user '{REPO_USER_PREFIX}<name>' "
            "must fit Linux's 32",
        )
    if value != value.lower() and _REPO_NAME.fullmatch(value.lower()):
        raise BadValue(f"{shown(value)} has upper-case letters", f"use {value.lower()!r}")
    if not _REPO_NAME.fullmatch(value):
        raise BadValue(
            f"{shown(value)} is not a valid repository name",
            "use lower-case letters, digits and '-', starting with a letter or digit",
        )
    return value


# `<transport>::<address>`: git's remote helpers; `ext::` runs any command, `fd::` reads a
# file descriptor. None is ever allowed.
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
_SCP = re.compile(r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>.+)")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_URL_PATH = re.compile(r"[A-Za-z0-9._~/+@%-]+")
_USER = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class GitUrl:
    """A repository URL taken apart: what the host key, the credential and a pull
    request's forge are derived from."""

    scheme: str  # ssh, https or file
    host: str  # "" for file
    port: int | None
    user: str | None
    path: str

    @property
    def known_hosts_name(self) -> str:
        """How ssh names the host in known_hosts: `host`, or `[host]:port` off port 22."""
        return self.host if self.port in (None, 22) else f"[{self.host}]:{self.port}"


def parse_url(value: str) -> GitUrl:
    """A URL that passed `_git_url`, taken apart."""
    if "://" not in value:
        found = _SCP.fullmatch(value)
        assert found is not None
        return GitUrl("ssh", found["host"], None, found["user"], found["path"])
    parts = urlsplit(value)
    host = parts.hostname or ""
    if parts.netloc.startswith("[") or ":" in host:
        host = f"[{host}]"
    return GitUrl(parts.scheme, host, parts.port, parts.username, parts.path)


def _git_url(value: str) -> str:
    fix = "write ssh://git@HOST/PATH, git@HOST:PATH, https://HOST/PATH or file:///PATH"
    if value.startswith("-"):
        raise BadValue(f"{shown(value)} starts with '-': git would read it as an option", fix)
    if _HELPER.match(value):
        raise BadValue(
            f"{shown(value)} names a git transport helper ('<transport>::'): ext:: runs any "
            "command and fd:: reads a descriptor, so none is allowed",
            fix,
        )
    for pattern, reason in (
        (r"[\x00-\x20\x7f]", "contains whitespace or a control character"),
        (r"[\"'`\\$;|&<>(){}*?]", "contains a character a URL of a repository has no use for"),
    ):
        if re.search(pattern, value):
            raise BadValue(f"{shown(value)} {reason}", fix)
    if "://" in value:
        return _scheme_url(value, fix)
    if value.startswith("/") or value.startswith("."):
        raise BadValue(f"{shown(value)} is a path, not a URL", "write file:///ABSOLUTE/PATH")
    found = _SCP.fullmatch(value)
    if found is None:
        raise BadValue(f"{shown(value)} is not a repository URL", fix)
    if found["host"].startswith(("-", ".")) or found["path"].startswith("-"):
        raise BadValue(f"{shown(value)}: its host or path starts with '-' or '.'", fix)
    _check_path(value, found["path"].lstrip("/"), fix)
    return value


def _scheme_url(value: str, fix: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise BadValue(f"{shown(value)} is not a valid URL", fix) from None
    scheme = parts.scheme
    if scheme in ("http", "git"):
        raise BadValue(
            f"{shown(value)} uses {scheme}://, which neither encrypts nor authenticates: "
            "anyone on the way could change the code the agents work on",
            "use the repository's https:// or ssh:// URL",
        )
    if scheme not in ("ssh", "https", "file"):
        raise BadValue(f"{shown(value)}: {scheme}:// is not a transport fleetctl uses", fix)
    if parts.query or parts.fragment:
        raise BadValue(f"{shown(value)} has a query or fragment", "remove the '?...' or '#...'")
    if scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise BadValue(f"{shown(value)} is not file:///ABSOLUTE/PATH", "write file:///PATH")
        _check_path(value, parts.path.lstrip("/"), fix)
        return value
    netloc = parts.netloc.rpartition("@")[2]
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    if not host or not _HOST.fullmatch(host):
        raise BadValue(f"{shown(value)} has no valid host", fix)
    if parts.password is not None or (scheme == "https" and parts.username is not None):
        raise BadValue(
            f"{shown(value)} has a user or password in it: it would be in every plan, unit and log",
            "remove it; put the token in credentials: (a file only the workers can read)",
        )
    if parts.username is not None and not _USER.fullmatch(parts.username):
        raise BadValue(f"{shown(value)} has an invalid user", fix)
    if port == 0:
        raise BadValue(f"{shown(value)} has port 0", "write the real port, or none")
    _check_path(value, parts.path.lstrip("/"), fix)
    return value


def _check_path(value: str, path: str, fix: str) -> None:
    if not path or not _URL_PATH.fullmatch(path):
        raise BadValue(f"{shown(value)} has no valid repository path", fix)
    if any(part in (".", "..") for part in path.split("/")):
        raise BadValue(f"{shown(value)} contains '.' or '..' components", "write the real path")


# What git's check-ref-format refuses in a ref, plus ':' (refspecs, transports) and
# whitespace; a ref is also never an option (`-...`) nor a path (`/...`, `../x`).
_REF_BAD = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def _git_ref(value: str) -> str:
    fix = "write a branch or tag name like main or release/1.2, or a full commit id"
    if not value or len(value) > 255:
        raise BadValue("must be 1 to 255 characters long", fix)
    if value.startswith("-"):
        raise BadValue(f"{shown(value)} starts with '-': git would read it as an option", fix)
    if _REF_BAD.search(value):
        raise BadValue(
            f"{shown(value)} contains whitespace, a control character, '..', '//', '@{{' or "
            "one of ~ ^ : ? * [ \\, which git refs cannot hold",
            fix,
        )
    parts = value.split("/")
    if value.startswith("/") or value.endswith("/") or value.endswith(".") or value == "@":
        raise BadValue(f"{shown(value)} is not a ref git takes", fix)
    if any(p.startswith(".") or p.endswith(".lock") for p in parts):
        raise BadValue(f"{shown(value)} has a part starting with '.' or ending in '.lock'", fix)
    return value


_WORKTREE_PATH = re.compile(r"[A-Za-z0-9._+@-]+(?:/[A-Za-z0-9._+@-]+)*")


def _worktree_path(value: str) -> str:
    """Where a copied file goes in each worktree: relative, inside it, not in .git."""
    fix = "write a path relative to the worktree's top, like .env or config/local.json"
    if value.startswith("/"):
        raise BadValue(f"{shown(value)} is absolute", fix)
    if not _WORKTREE_PATH.fullmatch(value):
        raise BadValue(f"{shown(value)} is not a plain relative path", fix)
    parts = value.split("/")
    if any(p in (".", "..") for p in parts) or parts[0].startswith("-"):
        raise BadValue(f"{shown(value)} leaves the worktree or starts with '-'", fix)
    if parts[0] == ".git":
        raise BadValue(f"{shown(value)} is inside .git", fix)
    return value


_GITHUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+")


def _forge_repo(value: str) -> str:
    if not _GITHUB_REPO.fullmatch(value) or ".." in value:
        raise BadValue(f"{shown(value)} is not OWNER/NAME", "write it like team/app")
    return value


def _forge_api(value: str) -> str:
    fix = "write the API's https:// URL, like https://api.github.com"
    try:
        parts = urlsplit(value)
    except ValueError:
        raise BadValue(f"{shown(value)} is not a URL", fix) from None
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise BadValue(f"{shown(value)} is not an https:// URL", fix)
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise BadValue(f"{shown(value)} is not a plain https:// URL", fix)
    if re.search(r"[\x00-\x20\x7f\"'`\\]", value):
        raise BadValue(f"{shown(value)} contains whitespace, a quote or a backslash", fix)
    return value.rstrip("/")


def github_repo(url: GitUrl) -> str | None:
    """OWNER/NAME of a github.com URL (None: another host, or not OWNER/NAME)."""
    if url.host.lower() != "github.com":
        return None
    path = url.path.strip("/").removesuffix(".git")
    return path if _GITHUB_REPO.fullmatch(path) else None


RepoName = Annotated[str, BeforeValidator(_text), AfterValidator(_repo_name)]
GitUrlText = Annotated[str, BeforeValidator(_text), AfterValidator(_git_url)]
GitRef = Annotated[str, BeforeValidator(_text), AfterValidator(_git_ref)]
WorktreePath = Annotated[str, BeforeValidator(_text), AfterValidator(_worktree_path)]
ForgeRepo = Annotated[str, BeforeValidator(_text), AfterValidator(_forge_repo)]
ForgeApi = Annotated[str, BeforeValidator(_text), AfterValidator(_forge_api)]
