"""What a host program is about to replace, kept before it is replaced: the write-ahead half
of the previous version (fleetctl/hostside/previous.py restores it).

Sent after agent.py and before steps.py, whose changing operations call `keep_*` first;
with no generation begun (`previous.begin_previous`), they keep nothing. Stdlib only.
"""

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # defined by agent.py, which precedes this file on the host
    from typing import Any, Dict, List

    from fleetctl.hostside.agent import _enabled, _user, json_dumps, spawn

STASH_MARK = ".fleetctl-previous-"
# The generation the running program records into: set by `begin_previous`.
_ACTIVE: "Dict[str, Any]" = {}
_GUARD = threading.Lock()  # steps run units in parallel threads


# --- the log ---------------------------------------------------------------------------


def save_log(path: str, log: "Dict[str, Any]") -> None:
    """Atomically, readable by root only (it names what the host had, never its content)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, 0o700, exist_ok=True)
    tmp = "{}.tmp-{}".format(path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = (json_dumps(log) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _stash(path: str, generation: str) -> str:
    directory, base = os.path.split(path)
    return os.path.join(directory, "." + base + STASH_MARK + generation)


def _record(entry: "Dict[str, Any]") -> None:
    """Write ahead: the entry is in the log before the change it undoes is made."""
    gen = _ACTIVE["generation"]
    gen["entries"].append(entry)
    save_log(_ACTIVE["path"], _ACTIVE["log"])


def _seen(key: str) -> bool:
    """Only the first touch of a path, unit or user is recorded: the state before the program."""
    seen = _ACTIVE["seen"]
    if key in seen:
        return True
    seen.add(key)
    return False


# --- what the steps call before they change something -----------------------------------


def keep_path(path: str) -> None:
    """Before a file or symlink at `path` is replaced or removed."""
    if not _ACTIVE:
        return
    with _GUARD:
        if _seen("path " + path):
            return
        gen = _ACTIVE["generation"]
        if not os.path.lexists(path):
            _record({"path": path, "was": "absent"})
        elif os.path.islink(path):
            _record({"path": path, "was": "link", "target": os.readlink(path)})
        elif os.path.isdir(path):
            _record(dict({"path": path, "was": "meta"}, **_meta(path)))
        else:
            stash = _stash(path, gen["id"])
            _record({"path": path, "was": "file", "stash": stash})
            if os.path.lexists(stash):
                os.unlink(stash)
            os.link(path, stash)


def keep_dir(path: str) -> None:
    """Before a directory's owner or mode is set (or it is made)."""
    if not _ACTIVE:
        return
    with _GUARD:
        if _seen("path " + path):
            return
        if os.path.isdir(path):
            _record(dict({"path": path, "was": "meta"}, **_meta(path)))
        else:
            _record({"path": path, "was": "absent", "dir": True})


def remove_tree(path: str) -> None:
    """Remove a directory: set aside when a generation is kept (renamed, not copied)."""
    if not _ACTIVE:
        _rmtree(path, ignore_errors=True)
        return
    with _GUARD:
        first = not _seen("path " + path)
        if first and os.path.isdir(path) and not os.path.islink(path):
            stash = _stash(path, _ACTIVE["generation"]["id"])
            _record({"path": path, "was": "dir", "stash": stash})
            if os.path.lexists(stash):
                _rmtree(stash, ignore_errors=True)
            os.rename(path, stash)
            return
        if first and os.path.lexists(path):  # a link or file where a directory was expected
            _ACTIVE["seen"].discard("path " + path)
    if os.path.lexists(path) and not os.path.isdir(path):
        keep_path(path)
        os.unlink(path)
    else:
        _rmtree(path, ignore_errors=True)


def keep_user(name: str) -> None:
    if not _ACTIVE:
        return
    with _GUARD:
        if _seen("user " + name):
            return
        found = _user(name)
        _record({"user": name, "home": found["home"] if found else None})


def keep_unit(unit: str, action: str) -> None:
    """Before systemctl acts on `unit`: was it running, was it enabled."""
    if not _ACTIVE:
        return
    with _GUARD:
        actions = _ACTIVE["units"]
        if unit in actions:
            if action not in actions[unit]["actions"]:
                actions[unit]["actions"].append(action)
                save_log(_ACTIVE["path"], _ACTIVE["log"])
            return
        entry = {"unit": unit, "active": _is_active(unit), "enabled": _enabled(unit)}
        entry["actions"] = [action]
        actions[unit] = entry
        _record(entry)


def kept_targets(link: str) -> "List[str]":
    """The targets `link` had in the generations kept (their venvs must stay)."""
    found = []
    for gen in _log_for_keeping().get("generations", []):
        for e in gen["entries"]:
            if e.get("path") == link and e.get("was") == "link":
                found.append(os.path.basename(e["target"]))
    return found


def _log_for_keeping() -> "Dict[str, Any]":
    log: Dict[str, Any] = _ACTIVE["log"] if _ACTIVE else {}
    return log


def _meta(path: str) -> "Dict[str, Any]":
    st = os.lstat(path)
    return {"mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}


def _is_active(unit: str) -> bool:
    try:
        done = spawn(["systemctl", "is-active", unit], timeout=60, merge_stderr=False)
    except OSError:
        return False
    return done is not None and done[1].decode("utf-8", "replace").strip() == "active"


def _rmtree(path: str, ignore_errors: bool = False) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)
