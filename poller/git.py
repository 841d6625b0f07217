"""Running git for the poller: one place that sets how every git command runs.

Every command gets a timeout (its process group is killed after it), no terminal prompt, no
system or user configuration (the agent runs as the same user and could write
`~/.gitconfig`: a hook path or `core.fsmonitor` there would run in these steps; the
repository's own `gitconfig` from REPOS_FILE, the operator's, is read instead), no hooks,
only the ssh, https and file transports (never `ext::` or `fd::`), and the mirror named as a
safe directory (it belongs to the repository's group, not to the worker). Credentials reach
git through its environment, never its argv: the ssh key and pinned host keys as
`GIT_SSH_COMMAND`, a forge token as an `http.extraHeader` in `GIT_CONFIG_*` variables. A
failure raises `GitError` with the command's last output; callers catch every exception.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shlex
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from poller.repos import ALLOWED_PROTOCOLS, Repo

TIMEOUT = 120.0
REMOTE_TIMEOUT = 600.0  # fetch and push move data over the network
_KEEP = 2000  # characters of output kept in an error


class StepError(Exception):
    """A step failed, and its message says why in full (shown as is in a result)."""


class GitError(StepError):
    pass


# git's own umask: what it makes in the shared mirror (a ref's directory, an objects fan-out)
# is the group's from its mkdir on. Under the unit's UMask=0077 it would be the maker's alone
# until git's chmod for core.sharedRepository a moment later, and another worker of the
# repository (another user) committing at that moment could not enter it. The worktrees stay
# private: they are under the worker's own 0700 directory.
UMASK = 0o007


def _config(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def environment(
    base: Mapping[str, str], repo: Repo | None = None, *, remote: bool = False
) -> dict[str, str]:
    """git's environment: PATH and the locale from `base`, isolation always, the
    repository's credentials only for a command that talks to its remote."""
    env = {k: v for k, v in base.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME")}
    env |= {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(repo.gitconfig) if repo and repo.gitconfig else os.devnull,
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
    }
    pairs: list[tuple[str, str]] = [
        ("core.hooksPath", os.devnull),
        ("core.fsmonitor", "false"),
        ("protocol.ext.allow", "never"),
        ("protocol.fd.allow", "never"),
        ("commit.gpgSign", "false"),
        ("gc.autoDetach", "false"),
    ]
    if repo is not None:
        pairs.append(("safe.directory", str(repo.mirror)))
        if repo.url.startswith("file://"):  # its upload-pack runs in a repository of another
            pairs.append(("safe.directory", urlsplit(repo.url).path))
    if repo is not None and remote:
        env["GIT_SSH_COMMAND"] = ssh_command(repo)
        token = _token(repo)
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            pairs.append(("http.extraHeader", f"Authorization: Basic {basic}"))
    return env | _config(pairs)


def ssh_command(repo: Repo) -> str:
    """ssh with the repository's deploy key and pinned host keys only, nothing else."""
    argv = ["ssh", "-F", os.devnull, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
    if repo.ssh_key is not None:
        argv += ["-i", str(repo.ssh_key)]
    if repo.known_hosts is not None:
        argv += ["-o", f"UserKnownHostsFile={repo.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        argv += ["-o", "GlobalKnownHostsFile=/dev/null"]
    return shlex.join(argv)


def _token(repo: Repo) -> str | None:
    if repo.token_file is None:
        return None
    text = repo.token_file.read_text().strip()
    # A token env file (`GITHUB_TOKEN=...`) or the bare token.
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            return line.split("=", 1)[1].strip().strip("'\"")
    return text or None


def token(repo: Repo) -> str | None:
    """The repository's forge token (for the pull request API), None without one."""
    return _token(repo)


async def run(
    cwd: Path,
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float = TIMEOUT,
    stdin: bytes | None = None,
) -> str:
    """`git <args>` in `cwd`; its stdout (stderr folded in only for the error)."""
    out = await run_bytes(cwd, args, env, timeout=timeout, stdin=stdin)
    return out.decode(errors="replace").strip()


async def run_bytes(
    cwd: Path,
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float = TIMEOUT,
    stdin: bytes | None = None,
) -> bytes:
    argv = ["git", *args]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        umask=UMASK,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        _kill(proc.pid)
        await proc.wait()
        raise GitError(f"git {_name(args)}: timed out after {timeout:.0f}s") from None
    except BaseException:
        _kill(proc.pid)
        with contextlib.suppress(Exception):
            await proc.wait()
        raise
    if proc.returncode != 0:
        text = (err or out).decode(errors="replace").strip()
        raise GitError(f"git {_name(args)} failed ({proc.returncode}): {text[-_KEEP:]}")
    return out


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _name(args: Sequence[str]) -> str:
    """The git subcommand, for messages (never the arguments: they may hold a URL)."""
    for a in args:
        if not a.startswith("-") and "=" not in a:
            return a
    return "?"


def why(e: BaseException) -> str:
    """An exception as one line for a result."""
    if isinstance(e, StepError):
        return str(e)
    if isinstance(e, OSError):
        return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    return f"{type(e).__name__}: {e}"
