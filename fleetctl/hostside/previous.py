"""The previous version of what a host program changes, kept on the host, so the host can go
back to it: by apply when the host fails its checks, by `fleetctl rollback`, and by the host
itself when no apply confirms the change in time (the watchdog: deploy-rs's magic rollback).

Sent after agent.py and steps.py in the same program, never alone and never imported: it
uses their helpers and registers its operations. Stdlib only.

A program's first step (`begin_previous`) starts a *generation*; from then on every step
records what it is about to replace before it replaces it (write ahead, in the log
`previous.json`): a file's old inode stays as a hard link beside it (`.<name>.fleetctl-
previous-<generation>`), a removed directory is renamed there, a symlink's old target,
a directory's owner and mode, a user's home, and each unit's state (active, enabled) before
its first action. Nothing is copied: keeping a version costs a link or a rename.

Restoring undoes a generation: the units it started that were not running are stopped,
every path and user goes back (newest first), systemd reloads, and the units that were
running are restarted (the pollers drained as apply drains them). The log keeps the newest
confirmed generation until a newer one is confirmed, so a host goes back to the version
the last successful apply left, whatever failed after it.
"""

import fcntl
import functools
import os
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # defined by agent.py and steps.py, which precede this file on the host
    from typing import Any, Dict, List, Optional

    from fleetctl.hostside.agent import (
        UNIT_PATH,
        _enabled,
        _read_json,
        _user,
        json_dumps,
        spawn,
    )
    from fleetctl.hostside.keeping import (
        _ACTIVE,
        _is_active,
        save_log,
    )
    from fleetctl.hostside.steps import (
        OPS,
        StepError,
        _fsync_dir,
        _reload_sshd,
        _run,
        _shutil,
        _sshd_effective,
        op_user,
        systemctl_drained,
        units_in_parallel,
        write_file,
    )

LOG_FORMAT = 1


def load_log(path: str) -> "Dict[str, Any]":
    log = _read_json(path)
    if log is None:
        return {"format": LOG_FORMAT, "generations": []}
    if not isinstance(log, dict) or log.get("_corrupt") or "generations" not in log:
        raise StepError("{} is damaged: remove it to forget the previous version".format(path))
    return log


# --- generations -----------------------------------------------------------------------


def op_begin_previous(step: "Dict[str, Any]") -> None:
    """Start a generation. An earlier one still waiting for its confirmation (its apply
    died) counts as confirmed: this program was planned against what it left. Only the
    newest confirmed generation is kept besides the new one."""
    path = step["log"]
    log = load_log(path)
    gens = log["generations"]
    for gen in gens:
        if gen["state"] != "confirmed":
            _stop_watchdog(gen)
            gen["state"] = "confirmed"
    while len(gens) > 1:
        _purge(gens.pop(0))
    new = {
        "id": step["id"],
        "state": "armed" if step.get("confirm") else "confirmed",
        "revision": step.get("revision"),
        "applied_at": step.get("applied_at"),
        "applied_by": step.get("applied_by"),
        "owners": step.get("owners") or {},
        "entries": [],
    }
    gens.append(new)
    log.pop("rolled_back", None)
    _ACTIVE.clear()
    _ACTIVE.update({"path": path, "log": log, "generation": new, "seen": set(), "units": {}})
    save_log(path, log)
    confirm = step.get("confirm")
    if confirm:
        new["watchdog"] = arm(path, new["id"], confirm)
        save_log(path, log)


def op_purge_previous(step: "Dict[str, Any]") -> None:
    """Forget every kept version (a host being decommissioned)."""
    path = step["log"]
    log = load_log(path)
    for gen in log["generations"]:
        _stop_watchdog(gen)
        _purge(gen)
    log["generations"] = []
    if os.path.exists(path):
        save_log(path, log)


def _purge(gen: "Dict[str, Any]") -> None:
    for e in gen["entries"]:
        stash = e.get("stash")
        if not stash or not os.path.lexists(stash):
            continue
        if os.path.isdir(stash) and not os.path.islink(stash):
            _shutil().rmtree(stash, ignore_errors=True)
        else:
            os.unlink(stash)


def confirm(req: "Dict[str, Any]") -> "Dict[str, Any]":
    """The apply that made generation `id` checked the host: keep it. Too late if the host
    rolled back already (or another apply replaced it)."""
    path = req["log"]
    log = load_log(path)
    gens = log["generations"]
    top = gens[-1] if gens else None
    if top is None or top["id"] != req["id"]:
        gone = log.get("rolled_back") or {}
        if gone.get("id") == req["id"]:
            return {"confirmed": False, "why": "the host rolled back by itself: " + gone["why"]}
        return {"confirmed": False, "why": "another apply or a rollback replaced this version"}
    _stop_watchdog(top)
    top["state"] = "confirmed"
    while len(gens) > 1:
        _purge(gens.pop(0))
    save_log(path, log)
    return {"confirmed": True}


def op_confirm_previous(step: "Dict[str, Any]") -> "Dict[str, Any]":
    done = confirm(step)
    if not done["confirmed"]:
        raise StepError(done["why"])
    return done


# --- restoring -------------------------------------------------------------------------


def restore(req: "Dict[str, Any]") -> "Dict[str, Any]":
    """Undo the newest generation (`id`, when given, must be it), or only the entries of
    `workers` (by the generation's `owners`). Returns what was restored and which units run
    again. `drain`: as apply's (None: each unit's own stop timeout)."""
    path = req["log"]
    log = load_log(path)
    gens = log["generations"]
    if not gens:
        return {"restored": None, "started": [], "why": "no previous version is kept"}
    gen = gens[-1]
    if req.get("id") is not None and gen["id"] != req["id"]:
        return {"restored": None, "started": [], "why": "the kept version is another apply's"}
    _stop_watchdog(gen)
    workers = req.get("workers")
    owners = gen.get("owners") or {}
    entries = gen["entries"]
    chosen = [e for e in entries if workers is None or owners.get(_key(e)) in workers]
    drain = req.get("drain")
    units = [e for e in chosen if "unit" in e]
    # 1. What the generation started and was not running before.
    for e in units:
        if not e["active"]:
            args = ["disable", "--now"] if not e["enabled"] else ["stop"]
            _unit_action(args, e["unit"], drain)
    # 2. Paths and users, newest first.
    sshd = False
    for e in reversed(chosen):
        if "path" in e:
            _restore_path(e)
            sshd = sshd or e["path"].startswith("/etc/ssh/")
        elif "user" in e:
            _restore_user(e)
    # 3. systemd reads the unit files again; the units that ran before run again.
    started = []
    if units or any(e.get("path", "").startswith(UNIT_DIR_PREFIX) for e in chosen):
        _run(["systemctl", "daemon-reload"])
    again = [e for e in units if e["active"]]
    plain = [e for e in again if not _is_worker_unit(e["unit"])]
    for e in plain:
        _again(e, drain)
        started.append(e["unit"])
    pollers = [e for e in again if _is_worker_unit(e["unit"])]
    units_in_parallel([functools.partial(_again, e, drain) for e in pollers])
    started += [e["unit"] for e in pollers]
    if sshd:
        _reload_sshd(_sshd_effective())
    # 4. What was restored is no longer kept.
    left = [e for e in entries if e not in chosen]
    if left:
        gen["entries"] = left
    else:
        gens.pop()
    save_log(path, log)
    return {"restored": gen["id"], "started": started, "revision": gen.get("revision")}


UNIT_DIR_PREFIX = "/etc/systemd/system/"


def _key(entry: "Dict[str, Any]") -> str:
    """The entry's resource key, as the plan and the generation's `owners` name it."""
    if "unit" in entry:
        return "unit " + str(entry["unit"])
    if "user" in entry:
        return "user " + str(entry["user"])
    return "path " + str(entry["path"])


def _is_worker_unit(unit: str) -> bool:
    return unit.endswith("-poller.service")


def _again(entry: "Dict[str, Any]", drain: "Optional[Dict[str, Any]]") -> None:
    unit = entry["unit"]
    if entry["enabled"] and not _enabled(unit):
        _run(["systemctl", "enable", unit])
    if not _is_active(unit):
        _run(["systemctl", "start", unit])
    elif entry["actions"] == ["reload"]:
        _run(["systemctl", "reload", unit])
    else:
        _unit_action(["restart"], unit, drain)


def _unit_action(args: "List[str]", unit: str, drain: "Optional[Dict[str, Any]]") -> None:
    timeout = (drain or {}).get("bound") or STOP_BOUND
    systemctl_drained(args + [unit], unit, (drain or {}).get("seconds"), timeout)


STOP_BOUND = 6 * 3600  # the agent's limit on one stop; systemd's TimeoutStopSec comes first


def _restore_path(e: "Dict[str, Any]") -> None:
    path, was = e["path"], e["was"]
    if was == "absent":
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            os.unlink(path)
        elif os.path.isdir(path):
            _shutil().rmtree(path, ignore_errors=True)
    elif was == "link":
        tmp = path + ".fleetctl-restore"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(e["target"], tmp)
        os.rename(tmp, path)
    elif was == "meta":
        if os.path.isdir(path):
            os.chown(path, e["uid"], e["gid"])
            os.chmod(path, e["mode"])
    elif os.path.lexists(e["stash"]):  # "file" or "dir"; no stash: it was never changed
        if was == "dir" and os.path.isdir(path) and not os.path.islink(path):
            _shutil().rmtree(path, ignore_errors=True)
        elif was == "dir" and os.path.lexists(path):
            os.unlink(path)
        parent = os.path.dirname(path)
        os.rename(e["stash"], path)
        _fsync_dir(parent)


def _restore_user(e: "Dict[str, Any]") -> None:
    name, home = e["user"], e["home"]
    if home is None:
        if _user(name) is not None:
            _run(["userdel", name])
    else:
        op_user({"name": name, "home": home})


# --- the watchdog ------------------------------------------------------------------------


def arm(path: str, generation: str, confirm: "Dict[str, Any]") -> "Dict[str, Any]":
    """Start the watchdog that restores `generation` unless it is confirmed within
    `confirm["timeout"]` seconds of this agent's exit, once it holds the apply lock.

    A process, not a timer: docker-systemctl-replacement (and other init systems) have no
    timers, and the countdown must start when this agent exits, which no timer can see.
    Under systemd it runs as a transient service (`systemd-run`), so a logind that kills a
    session's processes at logout cannot end it; elsewhere it is started in a session of its
    own, its output in the watchdog journal, so it outlives the SSH connection."""
    program = confirm["program"]
    write_file(program, confirm["source"].encode("utf-8"), "root", "root", 0o700)
    argv = [
        sys.executable or "/usr/bin/python3",
        "-I",
        "-S",
        program,
        path,
        generation,
        str(os.getpid()),
        str(confirm["timeout"]),
        confirm["lock"],
        confirm["journal"],
    ]
    if _systemd_is_init():
        unit = "fleetctl-watchdog-{}".format(generation)
        _run(["systemd-run", "--unit", unit, "--collect", "--quiet", "--"] + argv)
        return {"unit": unit, "pid": _main_pid_of(unit), "timeout": confirm["timeout"]}
    out = os.open(confirm["journal"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            {"PATH": UNIT_PATH, "LANG": "C.UTF-8"},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, out, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(out)
    return {"pid": pid, "timeout": confirm["timeout"]}


def _systemd_is_init() -> bool:
    try:
        with open("/proc/1/comm") as f:
            return f.read().strip() == "systemd"
    except OSError:
        return False


def _main_pid_of(unit: str) -> int:
    done = spawn(["systemctl", "show", "-p", "MainPID", unit], timeout=30, merge_stderr=False)
    text = done[1].decode("utf-8", "replace").strip() if done else ""
    try:
        return int(text.rpartition("=")[2] or 0)
    except ValueError:
        return 0


def _stop_watchdog(gen: "Dict[str, Any]") -> None:
    """End a generation's watchdog, if it is still that watchdog (not a reused pid)."""
    dog = gen.get("watchdog") or {}
    pid = dog.get("pid")
    if not pid or pid == os.getpid():
        return
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return
    if gen["id"].encode() in argv:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _armed(path: str, generation: str) -> bool:
    try:
        gens = load_log(path)["generations"]
    except StepError:
        return False
    return bool(gens) and gens[-1]["id"] == generation and gens[-1]["state"] == "armed"


def _say(what: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    sys.stderr.write("{} fleetctl watchdog: {}\n".format(stamp, what))
    sys.stderr.flush()


def watch(path: str, generation: str, agent: int, timeout: float, lock: str) -> int:
    """Wait for the agent that armed us to exit, then `timeout` seconds; then, holding the
    apply lock (so no apply is changing the host meanwhile), restore the generation if it is
    still waiting for its confirmation."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while _alive(agent):
        time.sleep(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _armed(path, generation):
            return 0
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    os.makedirs(os.path.dirname(lock), 0o700, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held until this process exits
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a restore is not interrupted halfway
    if not _armed(path, generation):
        return 0
    os.ftruncate(fd, 0)
    holder = {"owner": "fleetctl watchdog", "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    holder["command"] = "roll back generation {} (not confirmed)".format(generation)
    os.write(fd, json_dumps(holder).encode("utf-8"))
    why = "not confirmed within {:g} s of the apply's last step".format(timeout)
    _say("rolling back generation {}: {}".format(generation, why))
    try:
        done = restore({"log": path, "id": generation})
    except (StepError, OSError) as e:
        _say("the rollback of generation {} failed: {}".format(generation, e))
        return 1
    log = load_log(path)
    log["rolled_back"] = {"id": generation, "at": int(time.time()), "why": why}
    log["rolled_back"]["started"] = done["started"]
    save_log(path, log)
    _say("rolled back generation {}; running again: {}".format(generation, done["started"]))
    return 0


def watch_main(argv: "List[str]") -> None:
    path, generation, agent, timeout, lock, _journal = argv[1:7]
    sys.exit(watch(path, generation, int(agent), float(timeout), lock))


# --- operations ------------------------------------------------------------------------


def op_restore_previous(step: "Dict[str, Any]") -> "Dict[str, Any]":
    return restore(step)


OPS["begin_previous"] = op_begin_previous
OPS["purge_previous"] = op_purge_previous
OPS["confirm_previous"] = op_confirm_previous
OPS["restore_previous"] = op_restore_previous
