"""Rules of `repos:` that span keys or entries: a repository's URL against its credentials,
host key, push and pull requests; each worker's `repo:`/`repos:` against `repos:`; the old
`create_pr` and `github_remote` against a worker's repository.

Like checks.py, on the raw data, skipping values that failed their own check (`ok`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetctl.config.errors import Problem, shown
from fleetctl.config.gitvalues import REPO_USER_PREFIX, github_repo, parse_url
from fleetctl.config.model import service_user
from fleetctl.config.pydantic_errors import did_you_mean
from fleetctl.config.yamlsource import PathKey, SourceMap, dotted

Ok = Callable[[PathKey], bool]
_KEYSCAN = "to the key `ssh-keyscan -t ed25519 {host}` prints, without the host name"


class _Found:
    def __init__(self, fmap: SourceMap, ok: Ok) -> None:
        self.fmap, self.ok = fmap, ok
        self.problems: list[Problem] = []

    def at_key(self, path: PathKey, what: str, fix: str) -> None:
        self.problems.append(Problem(self.fmap.key(path), dotted(path), what, fix))

    def at_value(self, path: PathKey, what: str, fix: str) -> None:
        self.problems.append(Problem(self.fmap.value(path), dotted(path), what, fix))


def problems(data: Any, fmap: SourceMap, ok: Ok) -> list[Problem]:
    if not isinstance(data, dict):
        return []
    found = _Found(fmap, ok)
    repos = data.get("repos")
    declared: dict[str, dict[str, Any]] = {}
    if isinstance(repos, dict) and ok(("repos",)):
        for name, spec in repos.items():
            if isinstance(spec, dict) and ok(("repos", name)):
                declared[name] = spec
                _check_repo(found, name, spec)
    complete = ok(("repos",)) and all(ok(("repos", n)) for n in (repos or {}))
    _check_workers(found, data, declared, complete)
    return found.problems


# --- one repository ----------------------------------------------------------------------


def _check_repo(found: _Found, name: str, spec: dict[str, Any]) -> None:
    base: PathKey = ("repos", name)
    url = spec.get("url")
    if not isinstance(url, str) or not found.ok((*base, "url")):
        return
    parsed = parse_url(url)
    scheme = parsed.scheme
    deploy_key, token = _credentials(found, base, spec, scheme)
    if scheme == "ssh":
        if deploy_key is False:
            found.at_key(
                base,
                f"the ssh remote {shown(url)} needs a deploy key",
                "set credentials: to the deploy key's private key file",
            )
        if spec.get("host_key") is None:
            found.at_key(
                base,
                f"the ssh remote {shown(url)} needs its host key pinned",
                "set host_key: " + _KEYSCAN.format(host=parsed.host),
            )
    elif spec.get("host_key") is not None and found.ok((*base, "host_key")):
        found.at_key(
            (*base, "host_key"),
            f"only an ssh remote has a host key; {shown(url)} is {scheme}",
            "remove host_key:",
        )
    _check_push(found, base, spec, scheme, token)
    _check_pull_request(found, base, spec, parsed, token)


def _credentials(
    found: _Found, base: PathKey, spec: dict[str, Any], scheme: str
) -> tuple[bool | None, bool | None]:
    """Whether the repository has a deploy key and a token (None: unknown, failed its own
    check), reporting credentials that do not fit the URL's scheme."""
    path: PathKey = (*base, "credentials")
    creds = spec.get("credentials")
    if creds is None:
        return False, False
    if not found.ok(path):
        return None, None
    if scheme == "file":
        found.at_key(
            path,
            "a file:// repository is read directly: it has no credentials",
            "remove credentials:",
        )
        return None, None
    if isinstance(creds, str):
        return scheme == "ssh", scheme == "https"
    if not isinstance(creds, dict):
        return None, None
    key, token = creds.get("deploy_key"), creds.get("token")
    if key is None and token is None:
        found.at_key(
            path,
            "names neither a deploy_key nor a token",
            "set deploy_key:, token: or both, or remove credentials:",
        )
    if key is not None and scheme != "ssh" and found.ok((*path, "deploy_key")):
        found.at_key(
            (*path, "deploy_key"),
            f"only an ssh remote uses a deploy key, not {scheme}",
            "use the ssh URL, or remove deploy_key: and give a token:",
        )
    return key is not None, token is not None


def _check_push(
    found: _Found, base: PathKey, spec: dict[str, Any], scheme: str, token: bool | None
) -> None:
    pull = spec.get("pull_request", False)
    if spec.get("push") is False and pull not in (False, None) and found.ok((*base, "push")):
        found.at_key(
            (*base, "push"),
            "is false, but pull_request: opens a pull request, which needs the branch pushed",
            "remove push: false, or pull_request:",
        )
    if spec.get("push") is True and scheme == "https" and token is False:
        found.at_key(
            (*base, "push"),
            "pushing over https needs a token",
            "set credentials: to an env file with GITHUB_TOKEN=..., or use the ssh URL",
        )


def _check_pull_request(
    found: _Found, base: PathKey, spec: dict[str, Any], parsed: Any, token: bool | None
) -> None:
    path: PathKey = (*base, "pull_request")
    pull = spec.get("pull_request", False)
    if pull in (False, None) or not found.ok(path):
        return
    if pull is True and github_repo(parsed) is None:
        found.at_value(
            path,
            "pull_request: true knows only github.com, and the remote is on "
            + (parsed.host or "this machine"),
            "write pull_request: {api: https://HOST/api/v3, repo: OWNER/NAME}",
        )
    if token is False:
        found.at_key(
            path,
            "opening a pull request needs a forge token",
            "add credentials: {token: FILE}, an env file with GITHUB_TOKEN=...",
        )


def pull_request_possible(spec: dict[str, Any]) -> str | None:
    """Why a worker's create_pr cannot open pull requests on this repository (None: it can)."""
    url = spec.get("url")
    if not isinstance(url, str):
        return None
    parsed = parse_url(url)
    pull = spec.get("pull_request", False)
    creds = spec.get("credentials")
    has_token = (isinstance(creds, str) and parsed.scheme == "https") or (
        isinstance(creds, dict) and creds.get("token") is not None
    )
    if not has_token:
        return "it has no token (credentials: {token: FILE})"
    if pull in (False, None) and github_repo(parsed) is None:
        return "it is not on github.com (pull_request: {api: ..., repo: OWNER/NAME})"
    if spec.get("push") is False:
        return "it says push: false"
    return None


# --- workers -----------------------------------------------------------------------------


def _check_workers(
    found: _Found, data: dict[str, Any], declared: dict[str, dict[str, Any]], complete: bool
) -> None:
    raw_defaults, raw_workers = data.get("defaults"), data.get("workers")
    defaults: dict[str, Any] = raw_defaults if isinstance(raw_defaults, dict) else {}
    workers: list[Any] = raw_workers if isinstance(raw_workers, list) else []
    said: set[PathKey] = set()  # defaults' problems, said once
    without_repo: list[str] = []  # workers reading defaults.create_pr without a repository
    for i, entry in enumerate(workers):
        if not isinstance(entry, dict):
            continue
        base: PathKey = ("workers", i)
        wid = entry.get("worker_id")
        name = wid if isinstance(wid, str) and found.ok((*base, "worker_id")) else f"[{i}]"
        if isinstance(wid, str) and found.ok((*base, "worker_id")):
            _check_user(found, (*base, "worker_id"), wid, declared)
        names = _names(found, base, entry, defaults, declared, complete, said)
        _check_create_pr(found, base, entry, defaults, names, declared, name, without_repo)
        _check_remote(found, base, entry, defaults, names, said)
    if without_repo:
        found.at_value(
            ("defaults", "create_pr"),
            "create_pr pushes each task's branch to the worker's repository, and "
            + ", ".join(shown(n) for n in without_repo)
            + " ha"
            + ("s" if len(without_repo) == 1 else "ve")
            + " none",
            "set defaults.repo: NAME (one of repos:), or repo: on those workers",
        )


def _check_user(found: _Found, path: PathKey, wid: str, declared: dict[str, Any]) -> None:
    user = service_user(wid)
    repo = user.removeprefix(REPO_USER_PREFIX)
    if user.startswith(REPO_USER_PREFIX) and repo in declared:
        found.at_value(
            path,
            f"{shown(wid)} would run as the user {user!r}, which owns the mirror of "
            f"repository {repo!r}",
            "choose another worker_id",
        )


def _names(
    found: _Found,
    base: PathKey,
    entry: dict[str, Any],
    defaults: dict[str, Any],
    declared: dict[str, Any],
    complete: bool,
    said: set[PathKey],
) -> list[str] | None:
    """The repositories the worker uses (None: unknown, some value failed its own check)."""
    names: list[str] = []
    unknown = False
    for key in ("repo", "repos"):
        where: PathKey = (*base, key)
        value = entry.get(key)
        if value is None:
            where, value = ("defaults", key), defaults.get(key)
        if value is None:
            continue
        if not found.ok(where):
            return None
        listed = value if isinstance(value, list) else [value]
        for j, item in enumerate(listed):
            at: PathKey = (*where, j) if isinstance(value, list) else where
            if not isinstance(item, str):
                return None
            if item not in declared:
                unknown = True
                if complete and at not in said:
                    if at[0] == "defaults":
                        said.add(at)
                    found.at_value(at, f"no repository {item!r} in repos:", _known(item, declared))
                continue
            names.append(item)
    return None if unknown else names


def _known(name: str, declared: dict[str, Any]) -> str:
    if not declared:
        return "declare it under repos: (url, credentials, ...), docs/configuration.md"
    hint = did_you_mean(name, declared)
    rest = f"declared: {', '.join(sorted(declared))}"
    return f"{hint} {rest}" if hint else rest


def _check_create_pr(
    found: _Found,
    base: PathKey,
    entry: dict[str, Any],
    defaults: dict[str, Any],
    names: list[str] | None,
    declared: dict[str, dict[str, Any]],
    worker: str,
    without_repo: list[str],
) -> None:
    own = entry.get("create_pr")
    where: PathKey = (*base, "create_pr")
    if own is None:
        where, own = ("defaults", "create_pr"), defaults.get("create_pr")
    if own is not True or not found.ok(where) or names is None:
        return
    if not names:
        if where[0] == "defaults":
            without_repo.append(worker)
            return
        found.at_key(
            where,
            "create_pr pushes each task's branch to the worker's repository, and it has none "
            "(the shared work dir it used to push from is gone: each task has its own worktree)",
            "set repo: NAME (one of repos:) on this worker, or remove create_pr",
        )
        return
    for name in names:
        why = pull_request_possible(declared[name])
        if why is not None:
            found.at_key(
                where,
                f"create_pr opens a pull request for each task on repository {name!r}, and {why}",
                f"set up repos.{name} for pull requests, or remove create_pr",
            )


def _check_remote(
    found: _Found,
    base: PathKey,
    entry: dict[str, Any],
    defaults: dict[str, Any],
    names: list[str] | None,
    said: set[PathKey],
) -> None:
    """github_remote named where create_pr pushed from the shared work dir; a worker with a
    repository pushes to its URL, so any remote but the mirror's `origin` contradicts it."""
    where: PathKey = (*base, "github_remote")
    value = entry.get("github_remote")
    if value is None:
        where, value = ("defaults", "github_remote"), defaults.get("github_remote")
    if not names or value in (None, "origin") or not found.ok(where) or where in said:
        return
    if where[0] == "defaults":
        said.add(where)
    found.at_key(
        where,
        f"is {shown(str(value))}, but a worker with a repository pushes to the repository's "
        "url (the mirror's remote, origin)",
        "remove github_remote: (change repos.NAME.url to push elsewhere)",
    )
