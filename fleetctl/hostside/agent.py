"""fleetctl's host agent: observes one host in a single round trip (and, with steps.py
sent after it, changes it).

Shipped as text over SSH (`python3 -I -S -` with this file plus one `main(<request as a
Python literal>)` line on stdin), so secrets in the request never appear on a command
line. Stdlib only; runs on the host's own python3. It prints JSON only: one object for
`observe`.
"""

from __future__ import annotations

import binascii
import grp
import os
import pwd
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs the agent more start-up time than all of its observing
    from typing import Any, Callable, Dict, List, Optional, Tuple

SYSTEMD_DIR = "/etc/systemd/system"
REPOS_DIR = "/var/lib/fleet/repos"  # fleetctl/layout.py REPOS_DIR: each repository's mirror
REPO_MARKER = "fleet-fetched"  # in a mirror: the URL apply last fetched it from
CONTENT_LIMIT = 256 * 1024
TMP_MARK = ".fleetctl-tmp-"


# --- start-up cost ---------------------------------------------------------------------
# The agent starts once per host for every plan, on hosts that may be busy, and a no-op plan
# of a large fleet is mostly agent start-ups. `json`, `subprocess`, `base64`, `hashlib` and
# `typing` (through `re`, `enum` and OpenSSL) would triple the interpreter's bare start-up,
# so the observing path uses the C modules underneath them instead, and falls back to the
# plain modules wherever those are missing.


def _json_codec() -> Tuple[Callable[[str], Any], Callable[[Any], str]]:
    """(loads, dumps) built on `_json`, the C accelerator `json` itself uses."""
    try:
        from _json import encode_basestring_ascii as quote
        from _json import make_encoder, make_scanner

        class Context:
            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int
            parse_constant = float  # NaN, Infinity, -Infinity

        def unencodable(obj: Any) -> Any:
            raise TypeError("cannot encode {} as JSON".format(type(obj).__name__))

        scan = make_scanner(Context())  # type: ignore[arg-type]  # duck-typed, as json does
        # The arguments json.JSONEncoder passes: no circular check, sort_keys, allow_nan.
        encode = make_encoder(None, unencodable, quote, None, ": ", ", ", True, False, True)
        sample = '{"a": [1, 2.5, "\\u00e9", true, null]}'
        value = {"a": [1, 2.5, "\u00e9", True, None]}
        if scan(sample, 0) != (value, len(sample)) or "".join(encode(value, 0)) != sample:
            raise ImportError("_json does not behave as expected")
    except (ImportError, AttributeError, TypeError, StopIteration):
        import json

        return json.loads, lambda obj: json.dumps(obj, sort_keys=True)

    def loads(text: str) -> Any:
        text = text.strip(" \t\n\r")
        try:
            obj, end = scan(text, 0)
        except Exception:  # the C scanner can report errors only once json.decoder is loaded
            end = -1
        if end == len(text):
            return obj
        import json

        return json.loads(text)  # not JSON: the plain module raises a ValueError that says why

    def dumps(obj: Any) -> str:
        return "".join(encode(obj, 0))

    return loads, dumps


json_loads, json_dumps = _json_codec()


def _sha256_factory() -> Callable[..., Any]:
    """The interpreter's built-in SHA-256 (`hashlib` would load OpenSSL first)."""
    for name in ("_sha2", "_sha256"):  # Python 3.12+, 3.11 and older
        try:
            found: Callable[..., Any] = __import__(name).sha256
            return found
        except (ImportError, AttributeError):
            pass
    from hashlib import sha256

    return sha256


new_sha256 = _sha256_factory()


def spawn(
    argv: List[str], timeout: float, merge_stderr: bool, env: Optional[Dict[str, str]] = None
) -> Optional[Tuple[int, bytes]]:
    """Run `argv` with stdin from /dev/null: (exit code, stdout), or None if it ran past
    `timeout` (it is killed). Raises OSError if it cannot start. `subprocess`, without the
    start-up cost. `env`: the whole environment (default: the agent's)."""
    read_end, write_end = os.pipe()
    stderr = (
        (os.POSIX_SPAWN_DUP2, write_end, 2)
        if merge_stderr
        else (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)
    )
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, write_end, 1),
        stderr,
    ]
    try:
        pid = os.posix_spawnp(
            argv[0], argv, os.environ if env is None else env, file_actions=actions
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return None
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return code, b"".join(chunks)


def _emit(obj: Any) -> None:
    sys.stdout.write(json_dumps(obj) + "\n")
    sys.stdout.flush()


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json_loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {"_corrupt": True}


def _sha256(path: str) -> str:
    h = new_sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    digest: str = h.hexdigest()
    return digest


def _owner(st: os.stat_result) -> Tuple[str, str]:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user, group


def _stat_file(path: str) -> Optional[Dict[str, Any]]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    user, group = _owner(st)
    facts = {"mode": st.st_mode & 0o7777, "owner": user, "group": group}
    if os.path.isfile(path) and not os.path.islink(path):
        facts["sha256"] = _sha256(path)
    else:
        facts["sha256"] = None
    return facts


def _stat_dir(path: str) -> Optional[Dict[str, Any]]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    user, group = _owner(st)
    return {
        "mode": st.st_mode & 0o7777,
        "owner": user,
        "group": group,
        "is_dir": os.path.isdir(path),
    }


def _user(name: str) -> Optional[Dict[str, str]]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return {"home": entry.pw_dir}


def _enabled(unit: str) -> bool:
    """A unit is enabled when some target's .wants/ links to it (what `enable` makes)."""
    try:
        entries = os.listdir(SYSTEMD_DIR)
    except FileNotFoundError:
        return False
    for entry in entries:
        if entry.endswith(".wants") and os.path.lexists(os.path.join(SYSTEMD_DIR, entry, unit)):
            return True
    return False


def _states(units: List[str]) -> Dict[str, str]:
    """One `systemctl is-active` call for every unit that has a file: each unit's state
    (active, inactive, failed, activating, ...; "absent" without a unit file)."""
    present = [u for u in units if os.path.exists(os.path.join(SYSTEMD_DIR, u))]
    states = {u: "absent" for u in units}
    if not present:
        return states
    try:
        done = spawn(["systemctl", "is-active"] + present, timeout=60, merge_stderr=False)
    except OSError:
        return states
    if done is None:
        return states
    lines = done[1].decode("utf-8", "replace").split()
    for unit, state in zip(present, lines):
        states[unit] = state
    return states


def journal_argv(
    unit: str, lines: int, follow: bool = False, since: Optional[float] = None
) -> List[str]:
    """The one journalctl command that reads a unit's last `lines` log lines, as the unit
    wrote them: here (why a unit failed), and run by fleetctl over SSH (apply's check of
    the units it started, `fleetctl logs`), which imports it from this file. `since`: Unix
    seconds; `follow`: then every new line."""
    argv = ["journalctl", "-u", unit, "-o", "cat", "--no-pager", "-n", str(lines)]
    if since is not None:
        argv.append("--since=@{}".format(int(since)))
    if follow:
        argv.append("-f")
    return argv


def _last_log_line(unit: str) -> str:
    """Why an enabled unit is not running, as its journal's last line says (or "")."""
    argv = journal_argv(unit, 1)
    try:
        done = spawn(argv, timeout=10, merge_stderr=True)
    except OSError:
        return ""
    if done is None:
        return ""
    lines = done[1].decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip()[:200] if lines else ""


def _units(units: List[str]) -> Dict[str, Any]:
    states = _states(units)
    out = {}
    for u in units:
        enabled = _enabled(u)
        entry = {"enabled": enabled, "active": states[u] == "active", "state": states[u]}
        if enabled and states[u] in ("failed", "activating"):  # not a clean stop: say why
            entry["reason"] = _last_log_line(u)
        out[u] = entry
    return out


def _version_of(binary: str) -> Optional[str]:
    if not os.path.exists(binary):
        return None
    try:
        done = spawn([binary, "--version"], timeout=20, merge_stderr=True)
    except OSError:
        return None
    if done is None:
        return None
    return done[1].decode("utf-8", "replace").strip() or None


def _installed(path: str, hashed: bool) -> Optional[str]:
    """A package's installed version: the sha256 of its file (a binary such as nats-server,
    which observing never runs), or the version file fleetctl wrote."""
    if hashed:
        return _big_sha256(path) if os.path.isfile(path) else None
    return _read_text(path)


def _big_sha256(path: str) -> str:
    """`_sha256` through OpenSSL where the interpreter has it: loading it costs ~10 ms, and
    it hashes a 19 MB nats-server ~3x faster than the built-in SHA-256 (docs/performance.md)."""
    try:
        from _hashlib import openssl_sha256
    except ImportError:
        return _sha256(path)
    h = openssl_sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest: str = h.hexdigest()
    return digest


# The PATH systemd gives a unit that sets none: where a CLI's `#!/usr/bin/env node` looks.
UNIT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _node_version() -> str:
    """`node --version` (like v20.11.1) of the node a unit would run; "" when there is none."""
    for directory in UNIT_PATH.split(":"):
        found = _version_of(os.path.join(directory, "node"))
        if found is not None:
            return found
    return ""


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _python_facts() -> Dict[str, str]:
    """What the wheelhouse must match; cheaper than importing platform and sysconfig."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    name, _, version = libc.partition(" ")
    return {
        "version": "{}.{}".format(*sys.version_info[:2]),
        "executable": sys.executable,
        "platform": "{}-{}".format(sys.platform, os.uname().machine),
        "libc": "{}-{}".format(name.lower(), version) if name else "-",
    }


def _stat_repo(name: str) -> Optional[Dict[str, Any]]:
    """A repository's mirror: its directory's owner and mode, and the URL apply last fetched
    it from (its marker file, written after the fetch: None until one has succeeded)."""
    path = os.path.join(REPOS_DIR, name + ".git")
    st = _stat_dir(path)
    if st is None:
        return None
    url = _read_text(os.path.join(path, REPO_MARKER)) if st["is_dir"] else None
    return {"url": url or None, "mode": st["mode"], "owner": st["owner"], "group": st["group"]}


def _which(command: str) -> Optional[str]:
    """Where a unit (systemd's PATH) finds `command`, or None."""
    for directory in UNIT_PATH.split(":"):
        path = os.path.join(directory, command)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _usage(paths: List[str]) -> Dict[str, Any]:
    """Bytes used under each path (files and directories, links not followed; None: not
    there) and, for the first, the free bytes of its file system: `fleetctl status`."""
    out: Dict[str, Any] = {"bytes": {}, "free": None}
    for path in paths:
        out["bytes"][path] = _tree_bytes(path)
    for path in paths:
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        out["free"] = st.f_bavail * st.f_frsize
        break
    return out


def _tree_bytes(top: str) -> Optional[int]:
    try:
        total = os.lstat(top).st_blocks * 512
    except OSError:
        return None
    stack = [top]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


def _each(stat: Callable[[str], Any]) -> Callable[[List[str]], Dict[str, Any]]:
    return lambda names: {name: stat(name) for name in names}


# What the agent reports of each kind of resource it is asked about by name, by the request's
# field (and the kind its manifest keys start with): the host half of fleetctl's resource
# kinds (fleetctl/reconcile/resources/ builds the request and reads the answer).
STATS: Dict[str, Tuple[str, Callable[[List[str]], Dict[str, Any]]]] = {
    "files": ("file", _each(_stat_file)),
    "dirs": ("dir", _each(_stat_dir)),
    "users": ("user", _each(_user)),
    "repos": ("repo", _each(_stat_repo)),
    "units": ("unit", _units),
}


def observe(req: Dict[str, Any]) -> Dict[str, Any]:
    state_dir = req["state_dir"]
    manifest = _read_json(os.path.join(state_dir, "manifest.json"))
    journal = _read_json(os.path.join(state_dir, "journal.json"))
    previous = _read_json(os.path.join(state_dir, "previous.json"))  # hostside/previous.py
    owned = (manifest or {}).get("resources") or {}
    asked = {field: set(req.get(field) or ()) for field in STATS}
    by_kind = {kind: asked[field] for field, (kind, _) in STATS.items()}
    hashed = set(req.get("hashed") or ())
    for key in owned:
        kind, _, name = key.partition(" ")
        if kind in by_kind:
            by_kind[kind].add(name)
    contents = {}
    for path in req.get("contents") or ():
        try:
            if os.path.getsize(path) <= CONTENT_LIMIT:
                with open(path, "rb") as f:
                    contents[path] = binascii.b2a_base64(f.read(), newline=False).decode("ascii")
        except OSError:
            pass
    facts: Dict[str, Any] = {f: stat(sorted(asked[f])) for f, (_, stat) in STATS.items()}
    facts.update(
        {
            "hostname": os.uname().nodename,
            "python": _python_facts(),
            "manifest": manifest,
            "journal": journal,
            "previous": previous,
            "env_files": {
                p: (_sha256(p) if os.path.isfile(p) else None) for p in req.get("env_files") or ()
            },
            "contents": contents,
            "versions": {
                name: _installed(path, name in hashed)
                for name, path in (req.get("versions") or {}).items()
            },
            "node": _node_version() if req.get("node") else None,
            "commands": {name: _which(name) for name in req.get("commands") or ()},
        }
    )
    if req.get("usage"):
        facts["usage"] = _usage(req["usage"])
    return facts


# Operations by request "op": `observe` here; `apply` is in steps.py, which fleetctl sends
# after this file only when it applies (half the source, so observing compiles faster).
OPERATIONS: Dict[str, Callable[[Dict[str, Any]], int]] = {}


def _observe_op(req: Dict[str, Any]) -> int:
    _emit(observe(req))
    return 0


OPERATIONS["observe"] = _observe_op


def main(req: Dict[str, Any]) -> None:
    sys.exit(OPERATIONS[req["op"]](req))
