"""The worker's repositories: the JSON file named by REPOS_FILE (format in docs/poller.md).

fleetctl writes one file per worker (`apply` on hosts, `fleetctl up` under its state dir)
from fleet.yaml's `repos:`; the poller reads it once at start and checks every field, so a
task can only name a repository the operator declared, fetched from the URL the operator
gave, with the credentials the operator shipped. A bad file is a `ConfigError` naming the
field, like a bad variable. Also here: what a task may name (`check_name`, `check_ref`,
`check_base`), shared with fleetctl's publisher so both refuse the same things.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

FORMAT = 1
DEFAULT_RETAIN_S = 86400
DEFAULT_STEP_TIMEOUT_S = 1800
DEFAULT_MIN_FREE_BYTES = 1024**3

# A repository's name in fleet.yaml: a word, never an option or a path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# A full commit id (sha-1 or sha-256), as the publisher resolves it.
BASE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# What no ref component may hold (git check-ref-format), plus ':' (`ext::`, `fd::`, refspecs)
# and whitespace; control characters are refused separately.
_REF_BAD = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|//")
# `<transport>::<address>`: git's remote helpers, `ext::` and `fd::` among them.
_HELPER = re.compile(r"^[A-Za-z0-9+.-]+::")
URL_SCHEMES = ("ssh", "https", "file")
# GIT_ALLOW_PROTOCOL for every git the poller runs: nothing else, ever (`ext`, `fd`, `git`).
ALLOWED_PROTOCOLS = "ssh:https:file"


class RepoError(ValueError):
    """What a task names is unusable (the poller's `rejected`, fleetctl's refusal)."""


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise RepoError(
            f"repository name {name[:60]!r} must be 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit (never an option or a path)"
        )
    return name


def check_ref(ref: str) -> str:
    """A branch, tag or commit name git takes as a ref and nothing else: not an option
    (`--upload-pack=...`), not a path (`../x`, `/x`), no transport (`ext::...`)."""
    why = _ref_problem(ref)
    if why:
        raise RepoError(f"ref {ref[:60]!r} {why}")
    return ref


def _ref_problem(ref: str) -> str | None:
    if not ref or len(ref) > 255:
        return "must be 1-255 characters"
    if ref.startswith("-"):
        return "starts with '-' (it would be read as an option)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in ref):
        return "holds a control character"
    if _REF_BAD.search(ref):
        return "holds a character or sequence git refs cannot (space ~ ^ : ? * [ \\ .. @{ //)"
    if ref.startswith("/") or ref.endswith("/"):
        return "starts or ends with '/' (a path, not a ref)"
    parts = ref.split("/")
    if any(p.startswith(".") or p.endswith(".lock") for p in parts) or ref.endswith("."):
        return "has a component starting with '.' or ending with '.lock' (a path, not a ref)"
    if ref == "@":
        return "is '@'"
    return None


def check_base(base: str) -> str:
    if not BASE.fullmatch(base):
        raise RepoError(f"base {base[:80]!r} must be a full commit id (40 or 64 hex digits)")
    return base


def check_url(url: str) -> str:
    """An ssh, https or file URL (or ssh's `user@host:path`), never a transport helper."""
    if not url or url.startswith("-") or any(ord(c) < 0x20 for c in url):
        raise RepoError(f"url {url[:80]!r} must not be empty, start with '-' or hold controls")
    if _HELPER.match(url):
        raise RepoError(f"url {url[:80]!r}: git transport helpers (ext::, fd::, ...) are refused")
    if "://" in url:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in URL_SCHEMES:
            raise RepoError(f"url {url[:80]!r}: the scheme must be ssh, https or file")
        return url
    if re.fullmatch(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+", url):
        return url  # scp-like ssh
    raise RepoError(f"url {url[:80]!r} must be ssh://, https://, file:// or user@host:path")


@dataclass(frozen=True)
class Copy:
    """A file placed into each new worktree (never committed)."""

    source: Path
    to: str  # relative to the worktree


@dataclass(frozen=True)
class PullRequest:
    api: str  # e.g. https://api.github.com
    repo: str  # owner/name on the forge
    base: str | None = None  # the branch pull requests target (None: see docs/poller.md)
    forge: str = "github"


@dataclass(frozen=True)
class Repo:
    name: str
    url: str
    mirror: Path
    ref: str | None = None
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    token_file: Path | None = None
    gitconfig: Path | None = None  # git's global config for this repository (the operator's)
    setup: tuple[str, ...] = ()
    check: tuple[str, ...] = ()
    copy: tuple[Copy, ...] = ()
    push: bool = False
    pull_request: PullRequest | None = None
    retain_s: float = DEFAULT_RETAIN_S
    setup_timeout_s: float = DEFAULT_STEP_TIMEOUT_S
    check_timeout_s: float = DEFAULT_STEP_TIMEOUT_S


@dataclass(frozen=True)
class Repos:
    """Everything REPOS_FILE says; `NO_REPOS` when the worker has none."""

    worktrees: Path | None = None  # None: $WORK_BASE/worktrees
    default: str | None = None
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    repos: Mapping[str, Repo] = field(default_factory=dict)

    def named(self, name: str | None) -> Repo | None:
        """The task's repository: `name`, else the worker's default; None: no repository.
        RepoError for a name this worker does not have."""
        chosen = name if name is not None else self.default
        if chosen is None:
            return None
        check_name(chosen)
        repo = self.repos.get(chosen)
        if repo is None:
            have = ", ".join(sorted(self.repos)) or "none"
            raise RepoError(
                f"repository {chosen!r} is not declared for this worker (it has: {have})"
            )
        return repo


NO_REPOS = Repos()


class FileError(ValueError):
    """REPOS_FILE is unreadable or wrong; the message names the field."""


def load(path: Path) -> Repos:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FileError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise FileError(f"{path}: not JSON ({e})") from None
    try:
        return parse(doc)
    except FileError as e:
        raise FileError(f"{path}: {e}") from None


def parse(doc: Any) -> Repos:
    r = _Reader(doc, "")
    if r.get("format", int) != FORMAT:
        raise FileError(f"format must be {FORMAT}")
    repos: dict[str, Repo] = {}
    for name, body in r.get("repos", dict).items():
        try:
            check_name(name)
        except RepoError as e:
            raise FileError(f"repos: {e}") from None
        repos[name] = _repo(name, _Reader(body, f"repos.{name}."))
    default = r.opt("default", str)
    if default is not None and default not in repos:
        raise FileError(f"default {default!r} is not one of repos ({', '.join(repos) or 'none'})")
    worktrees = _abs(r, "worktrees", required=False)
    free = r.opt("min_free_bytes", int)
    return Repos(
        worktrees=worktrees,
        default=default,
        min_free_bytes=DEFAULT_MIN_FREE_BYTES if free is None else free,
        repos=repos,
    )


def _repo(name: str, r: _Reader) -> Repo:
    url = r.get("url", str)
    try:
        check_url(url)
    except RepoError as e:
        raise FileError(f"{r.where}url: {e}") from None
    ref = r.opt("ref", str)
    if ref is not None:
        try:
            check_ref(ref)
        except RepoError as e:
            raise FileError(f"{r.where}ref: {e}") from None
    mirror = _abs(r, "mirror", required=True)
    assert mirror is not None
    push = r.opt("push", bool) or False
    pr = _pull_request(r)
    if pr is not None and not push:
        raise FileError(f"{r.where}pull_request needs push: true (a pull request needs the branch)")
    return Repo(
        name=name,
        url=url,
        mirror=mirror,
        ref=ref,
        ssh_key=_abs(r, "ssh_key", required=False),
        known_hosts=_abs(r, "known_hosts", required=False),
        token_file=_abs(r, "token_file", required=False),
        gitconfig=_abs(r, "gitconfig", required=False),
        setup=_argv(r, "setup"),
        check=_argv(r, "check"),
        copy=_copies(r),
        push=push,
        pull_request=pr,
        retain_s=_seconds(r, "retain_s", DEFAULT_RETAIN_S, zero=True),
        setup_timeout_s=_seconds(r, "setup_timeout_s", DEFAULT_STEP_TIMEOUT_S),
        check_timeout_s=_seconds(r, "check_timeout_s", DEFAULT_STEP_TIMEOUT_S),
    )


def _pull_request(r: _Reader) -> PullRequest | None:
    body = r.opt("pull_request", dict)
    if body is None:
        return None
    p = _Reader(body, f"{r.where}pull_request.")
    forge = p.opt("forge", str) or "github"
    if forge != "github":
        raise FileError(f"{p.where}forge must be github")
    api = p.get("api", str).rstrip("/")
    parts = urlsplit(api)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)) or not parts.netloc:
        raise FileError(f"{p.where}api {api[:80]!r} must be an https:// URL")
    repo = p.get("repo", str)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo) or ".." in repo:
        raise FileError(f"{p.where}repo {repo[:80]!r} must be owner/name")
    base = p.opt("base", str)
    if base is not None:
        try:
            check_ref(base)
        except RepoError as e:
            raise FileError(f"{p.where}base: {e}") from None
    return PullRequest(api, repo, base, forge)


def _argv(r: _Reader, key: str) -> tuple[str, ...]:
    value = r.opt(key, list) or []
    if not all(isinstance(a, str) and "\x00" not in a for a in value) or (value and not value[0]):
        raise FileError(f"{r.where}{key} must be a list of strings (an argv), or []")
    return tuple(value)


def _copies(r: _Reader) -> tuple[Copy, ...]:
    out = []
    for i, item in enumerate(r.opt("copy", list) or []):
        c = _Reader(item, f"{r.where}copy[{i}].")
        source = _abs(c, "from", required=True)
        assert source is not None
        to = c.get("to", str)
        pure = PurePosixPath(to)
        if not to or pure.is_absolute() or ".." in pure.parts or pure.parts[:1] == (".git",):
            raise FileError(f"{c.where}to {to[:80]!r} must be a path inside the worktree")
        out.append(Copy(source, str(pure)))
    return tuple(out)


def _seconds(r: _Reader, key: str, default: float, *, zero: bool = False) -> float:
    value = r.opt(key, (int, float))
    if value is None:
        return default
    if isinstance(value, bool) or value < 0 or (value == 0 and not zero) or value > 10**9:
        raise FileError(f"{r.where}{key} must be a number of seconds greater than 0")
    return float(value)


def _abs(r: _Reader, key: str, *, required: bool) -> Path | None:
    value = r.get(key, str) if required else r.opt(key, str)
    if value is None:
        return None
    if not value.startswith("/") or "\x00" in value or ".." in PurePosixPath(value).parts:
        raise FileError(f"{r.where}{key} {value[:80]!r} must be an absolute path")
    return Path(value)


class _Reader:
    """Typed access to one JSON object, errors naming the field by its dotted path."""

    def __init__(self, body: Any, where: str) -> None:
        if not isinstance(body, dict):
            raise FileError(f"{where.rstrip('.') or 'the file'} must be a JSON object")
        self.body, self.where = body, where

    def get(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.body:
            raise FileError(f"{self.where}{key} is missing")
        return self._typed(key, kind)

    def opt(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if self.body.get(key) is None:
            return None
        return self._typed(key, kind)

    def _typed(self, key: str, kind: type | tuple[type, ...]) -> Any:
        value = self.body[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (bool not in kinds and isinstance(value, bool)) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise FileError(f"{self.where}{key} must be {_article(names)}")
        return value


def _article(name: str) -> str:
    return {
        "str": "a string",
        "int": "an integer",
        "bool": "true or false",
        "dict": "an object",
        "list": "a list",
        "int or float": "a number",
    }.get(name, name)
