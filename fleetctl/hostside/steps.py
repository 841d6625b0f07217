"""fleetctl's host steps: the `apply` operation of the agent.

Sent after agent.py in the same program, never alone and never imported: it uses the
agent's helpers (and its `from __future__ import annotations`) and registers itself in the
agent's OPERATIONS. Stdlib only, like the agent. Prints one JSON event line per step, so
fleetctl can show progress and knows which step failed.
"""

import binascii
import fcntl
import functools
import grp
import os
import pwd
import signal
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # defined by agent.py, which precedes this file on the host
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from fleetctl.hostside.agent import (
        OPERATIONS,
        REPO_MARKER,
        TMP_MARK,
        UNIT_PATH,
        _emit,
        _sha256,
        _user,
        _which,
        new_sha256,
        spawn,
    )
    from fleetctl.hostside.keeping import (
        keep_dir,
        keep_path,
        keep_unit,
        keep_user,
        kept_targets,
        remove_tree,
    )


def _shutil() -> Any:
    import shutil

    return shutil


class StepError(Exception):
    pass


def _ids(owner: str, group: str) -> Tuple[int, int]:
    try:
        uid = pwd.getpwnam(owner).pw_uid
        gid = grp.getgrnam(group).gr_gid
    except KeyError as e:
        raise StepError("no such user or group: {}".format(e.args[0])) from None
    return uid, gid


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(path: str) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, 0o755, exist_ok=True)


def write_file(
    path: str, data: bytes, owner: str = "root", group: str = "root", mode: int = 0o644
) -> None:
    """Temporary file beside the target, fsync, rename: never a half-written file."""
    uid, gid = _ids(owner, group)
    directory = os.path.dirname(path)
    _makedirs(directory)
    base = os.path.basename(path)
    for stale in os.listdir(directory):
        if stale.startswith("." + base + TMP_MARK):
            os.unlink(os.path.join(directory, stale))
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + base + TMP_MARK)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _run(
    argv: List[str],
    timeout: float = 300,
    env: Optional[Dict[str, str]] = None,
    what: Optional[str] = None,
    ok: Tuple[int, ...] = (0,),
) -> bytes:
    """`what`: how the failure names the command (default: its first words); `ok`: the exit
    codes that are not a failure."""
    try:
        done = spawn(argv, timeout, merge_stderr=True, env=env)
    except OSError as e:
        raise StepError("cannot run {}: {}".format(argv[0], e.strerror)) from None
    if done is None:
        raise StepError("{} timed out after {}s".format(what or argv[0], timeout))
    code, output = done
    if code not in ok:
        tail = output.decode("utf-8", "replace").strip().splitlines()[-5:]
        said = what or " ".join(argv[:3])
        raise StepError("{} exited {}: {}".format(said, code, " / ".join(tail)))
    return output


def op_user(step: Dict[str, Any]) -> None:
    name, home = step["name"], step["home"]
    keep_user(name)
    found = _user(name)
    if found is None:
        _run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                home,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--password",
                "*",
                name,
            ]
        )
    elif found["home"] != home:
        _run(["usermod", "--home", home, name])


def op_dir(step: Dict[str, Any]) -> None:
    path = step["path"]
    keep_dir(path)
    _makedirs(path)
    uid, gid = _ids(step["owner"], step["group"])
    os.chown(path, uid, gid)
    os.chmod(path, step["mode"])


def _content(step: Dict[str, Any]) -> bytes:
    data = binascii.a2b_base64(step["content"])
    if new_sha256(data).hexdigest() != step["sha256"]:
        raise StepError("content of {} arrived damaged".format(step["path"]))
    return data


def op_file(step: Dict[str, Any]) -> None:
    keep_path(step["path"])
    write_file(step["path"], _content(step), step["owner"], step["group"], step["mode"])


def op_remove_file(step: Dict[str, Any]) -> None:
    keep_path(step["path"])
    try:
        os.unlink(step["path"])
    except FileNotFoundError:
        pass


SSHD = "/usr/sbin/sshd"


def op_sshd_config(step: Dict[str, Any]) -> None:
    """A file sshd reads, which it reads only at start and reload: write it, have sshd check
    the whole config and, for `user`, show the `expect`ed settings (else it never reads the
    file), then reload it. If sshd refuses it, or never reads it, the previous file is put
    back (sshd must keep accepting logins) and the step fails saying why."""
    data = _content(step)
    path = step["path"]
    keep_path(path)
    previous: Optional[bytes] = None
    if os.path.exists(path):
        with open(path, "rb") as f:
            previous = f.read()
    write_file(path, data, step["owner"], step["group"], step["mode"])
    try:
        _run([SSHD, "-t"])
        effective = _sshd_effective(step.get("user") or "root")
        missing = [want for want in step.get("expect") or () if want not in effective]
        if missing:
            raise StepError(
                "sshd does not apply {}: add `Include /etc/ssh/sshd_config.d/*.conf` at the "
                "top of /etc/ssh/sshd_config".format(path)
            )
    except StepError:
        if previous is None:
            os.unlink(path)
        else:
            write_file(path, previous, step["owner"], step["group"], step["mode"])
        raise
    _reload_sshd(effective)


def op_remove_sshd_config(step: Dict[str, Any]) -> None:
    """Remove a file sshd reads, then have sshd reload without it."""
    keep_path(step["path"])
    try:
        os.unlink(step["path"])
    except FileNotFoundError:
        return
    _reload_sshd(_sshd_effective())


def _sshd_effective(user: str = "root") -> List[str]:
    """sshd's effective settings for a login of `user` (`sshd -T`), one `key value` a line."""
    spec = "user={},host=fleetctl,addr=127.0.0.1".format(user)
    out = _run([SSHD, "-T", "-C", spec]).decode("utf-8", "replace")
    return [line.strip() for line in out.splitlines()]


def _reload_sshd(effective: List[str]) -> None:
    """SIGHUP to the listening sshd (what its unit's ExecReload does); open sessions stay. No
    pid file: no listening daemon (a socket-activated sshd reads the config per login)."""
    pidfile = "/run/sshd.pid"
    for line in effective:
        if line.startswith("pidfile "):
            pidfile = line.split(" ", 1)[1]
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        pass


def op_remove_dir(step: Dict[str, Any]) -> None:
    remove_tree(step["path"])


def op_remove_user(step: Dict[str, Any]) -> None:
    keep_user(step["name"])
    if _user(step["name"]) is not None:
        _run(["userdel", step["name"]])


def op_remove_package(step: Dict[str, Any]) -> None:
    """The poller: its symlink, every `venv-<version>` beside it, and their directory if
    nothing else is left in it; nats-server: its binary."""
    binary = step.get("binary")
    if binary:
        keep_path(binary)
        try:
            os.unlink(binary)
        except FileNotFoundError:
            pass
        return
    link = step["venv"]
    parent, prefix = os.path.dirname(link), os.path.basename(link) + "-"
    if os.path.islink(link):
        keep_path(link)
        os.unlink(link)
    elif os.path.exists(link):
        remove_tree(link)
    try:
        entries = os.listdir(parent)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.startswith(prefix):
            remove_tree(os.path.join(parent, entry))
    op_remove_empty_dir({"path": parent})


def op_remove_empty_dir(step: Dict[str, Any]) -> None:
    try:
        os.rmdir(step["path"])
    except OSError:
        pass  # gone already, or something else lives there: not ours to remove


# The poller hands back the tasks it runs at once and exits (docs/poller.md): what
# `apply --no-drain` sends first, and `--drain-timeout` once the drain has lasted that long.
HANDBACK = signal.SIGUSR1
UNIT_VERBS = ("enable", "disable", "start", "stop", "restart", "reload")


def op_systemctl(step: Dict[str, Any]) -> None:
    """systemctl, its unit's state kept first. With `drain` (a poller that stops): the
    poller is told to hand its tasks back after `drain.seconds` (0: at once); without,
    it drains for as long as its unit's TimeoutStopSec lets it."""
    args = step["args"]
    unit = args[-1] if args and args[0] in UNIT_VERBS else None
    if unit is not None:
        keep_unit(unit, args[0])
    drain = step.get("drain")
    if drain is None or unit is None:
        _run(["systemctl"] + args, timeout=step.get("timeout", 300))
        return
    systemctl_drained(args, unit, drain.get("seconds"), step.get("timeout", 300))


def systemctl_drained(args: List[str], unit: str, seconds: Optional[float], timeout: float) -> None:
    """`systemctl ARGS` on a poller that stops: after `seconds` (0: at once; None: never)
    its main process gets HANDBACK."""
    if seconds is None:
        _run(["systemctl"] + args, timeout=timeout)
        return
    process = _main_process(unit)
    if process is not None and seconds <= 0:
        _signal(process, HANDBACK)
    timer = None
    if process is not None and seconds > 0:
        timer = threading.Timer(seconds, _signal, (process, HANDBACK))
        timer.daemon = True
        timer.start()
    try:
        _run(["systemctl"] + args, timeout=timeout)
    finally:
        if timer is not None:
            timer.cancel()


def _main_process(unit: str) -> Optional[Tuple[int, str]]:
    """The unit's main process: (pid, its start time), so a reused pid is never signalled."""
    done = spawn(["systemctl", "show", "-p", "MainPID", unit], timeout=30, merge_stderr=False)
    text = done[1].decode("utf-8", "replace").strip() if done else ""
    try:
        pid = int(text.rpartition("=")[2] or 0)
    except ValueError:
        return None
    started = _start_time(pid) if pid > 0 else None
    return (pid, started) if started is not None else None


def _start_time(pid: int) -> Optional[str]:
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _signal(process: Tuple[int, str], sig: int) -> None:
    pid, started = process
    if _start_time(pid) != started:
        return  # it exited already (and the pid may be another process's now)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def units_in_parallel(actions: List[Callable[[], None]]) -> None:
    """Run each action in a thread of its own (pollers drain at the same time, not one after
    another); the first failure is raised once all are done."""
    errors: List[BaseException] = []

    def run(action: Callable[[], None]) -> None:
        try:
            action()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def op_parallel(step: Dict[str, Any]) -> None:
    """Several steps at once (the pollers' restarts)."""
    units_in_parallel([functools.partial(OPS[s["op"]], s) for s in step["steps"]])


def op_install_poller(step: Dict[str, Any]) -> None:
    """A new virtual environment per version, switched to with one atomic symlink rename."""
    link, version, wheelhouse = step["link"], step["version"], step["wheelhouse"]
    target = "{}-{}".format(link, version.replace("+", "_"))
    _shutil().rmtree(target, ignore_errors=True)
    _run([sys.executable, "-m", "venv", "--without-pip", target])
    pip_wheel = _checked_pip_wheel(wheelhouse)
    # pip checks every wheel it installs against requirements.txt's hashes, the poller's own
    # included, and writes the bytecode now, as root: the pollers run as users who cannot
    # write the venv, so without it each poller would compile its libraries at every start.
    _run(
        [
            os.path.join(target, "bin", "python"),
            os.path.join(pip_wheel, "pip"),
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            wheelhouse,
            "--require-hashes",
            "--no-deps",
            "--disable-pip-version-check",
            "-r",
            os.path.join(wheelhouse, "requirements.txt"),
        ],
        timeout=600,
    )
    write_file(os.path.join(target, "fleet-poller.version"), (version + "\n").encode())
    tmp_link = link + TMP_MARK + "link"
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(os.path.basename(target), tmp_link)
    keep_path(link)
    os.rename(tmp_link, link)
    _fsync_dir(os.path.dirname(link))
    keep = {os.path.basename(target), os.path.basename(step.get("previous") or "")}
    keep.update(kept_targets(link))
    prefix = os.path.basename(link) + "-"
    for entry in os.listdir(os.path.dirname(link)):
        if entry.startswith(prefix) and entry not in keep:
            _shutil().rmtree(os.path.join(os.path.dirname(link), entry), ignore_errors=True)
    _shutil().rmtree(wheelhouse, ignore_errors=True)


def _checked_pip_wheel(wheelhouse: str) -> str:
    """The pip wheel we are about to run, checked against SHA256SUMS first."""
    with open(os.path.join(wheelhouse, "SHA256SUMS")) as f:
        sums = [line.split() for line in f if line.strip()]
    pips = [(digest, name) for digest, name in sums if name.startswith("pip-")]
    if not pips:
        raise StepError("the wheelhouse has no pip wheel")
    digest, name = pips[0]
    path = os.path.join(wheelhouse, name)
    with open(path, "rb") as f:
        if new_sha256(f.read()).hexdigest() != digest:
            raise StepError("{} does not match its sha256 in SHA256SUMS".format(name))
    return path


def op_install_binary(step: Dict[str, Any]) -> None:
    src, dest = step["src"], step["dest"]
    with open(src, "rb") as f:
        data = f.read()
    if new_sha256(data).hexdigest() != step["sha256"]:
        raise StepError("{} arrived damaged".format(src))
    keep_path(dest)
    write_file(dest, data, "root", "root", 0o755)
    os.unlink(src)


def _inside(name: str) -> bool:
    """A relative path that stays in the directory it is taken from."""
    norm = os.path.normpath(name)
    return not os.path.isabs(name) and norm != ".." and not norm.startswith("../")


def _checked_members(tar: Any) -> List[Any]:
    """Directories, regular files and links that stay inside the tree, nothing else: no
    absolute path, no `..`, no device, no link pointing out."""
    members = []
    for m in tar.getmembers():
        if not _inside(m.name):
            raise StepError("the bundle has a path outside its tree: {!r}".format(m.name))
        if m.issym():
            target = os.path.join(os.path.dirname(m.name), m.linkname)
            if os.path.isabs(m.linkname) or not _inside(target):
                raise StepError("the bundle's link {!r} points outside its tree".format(m.name))
        elif m.islnk():
            if not _inside(m.linkname):
                raise StepError("the bundle's link {!r} points outside its tree".format(m.name))
        elif not (m.isdir() or m.isreg()):
            raise StepError("the bundle has {!r}, not a file, dir or link".format(m.name))
        m.uid, m.gid, m.uname, m.gname = 0, 0, "root", "root"
        m.mode &= 0o755  # nothing writable but by root, nothing setuid
        members.append(m)
    return members


def _unpack_and_check(src: str, partial: str, step: Dict[str, Any]) -> None:
    import tarfile

    # The members are checked here; where tarfile has extraction filters (3.12, and 3.11.4 on),
    # its `data` filter checks them again.
    with tarfile.open(src) as tar:
        members = _checked_members(tar)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(partial, members=members, filter="data")
        else:
            tar.extractall(partial, members=members)  # noqa: S202
    argv = [os.path.join(partial, step["check"][0])] + step["check"][1:]
    home = os.path.join(partial, ".home")  # whatever the CLI writes at start goes here
    os.mkdir(home, 0o700)
    env = {"PATH": UNIT_PATH, "HOME": home, "LANG": "C.UTF-8"}
    out = _run(argv, timeout=step["timeout"], env=env).decode("utf-8", "replace")
    _shutil().rmtree(home)
    if step["expect"] not in out.split():
        said = " / ".join(out.strip().splitlines()[-2:])
        raise StepError(
            "{} says {!r}, not version {}".format(step["check"][0], said, step["expect"])
        )


def op_install_tree(step: Dict[str, Any]) -> None:
    """An LLM CLI from its bundle: checked against its sha256, unpacked beside its place,
    run once (`--version` must name the pinned version), then renamed into place; the
    version file is written last, so it marks a complete install."""
    src, dest = step["src"], step["dest"]
    if _sha256(src) != step["sha256"]:
        raise StepError("{} arrived damaged".format(src))
    partial = dest + ".partial"
    _shutil().rmtree(partial, ignore_errors=True)
    _makedirs(os.path.dirname(dest))
    os.mkdir(partial, 0o755)
    try:
        _unpack_and_check(src, partial, step)
    except BaseException:
        _shutil().rmtree(partial, ignore_errors=True)  # a failed install leaves nothing
        raise
    if os.path.lexists(dest):
        remove_tree(dest)
    else:
        keep_path(dest)  # absent: a rollback removes it
    os.rename(partial, dest)
    write_file(os.path.join(dest, step["version_file"]), (step["expect"] + "\n").encode())
    _fsync_dir(os.path.dirname(dest))
    os.unlink(src)


# Only these transports, for every git this agent runs: never ext::, fd:: or git://.
GIT_PROTOCOLS = "ssh:https:file"


def _git_env(step: Dict[str, Any]) -> Dict[str, str]:
    """What git runs with for a repository: no terminal prompt, no config but the
    repository's own (and its safe.directory file), the pinned host key and deploy key for
    ssh, the token for https in an HTTP header (in the environment, never on a command line).
    """
    env = {
        "PATH": UNIT_PATH,
        "HOME": step["path"],
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": step.get("gitconfig") or os.devnull,
    }
    if step.get("ssh_key"):
        env["GIT_SSH_COMMAND"] = " ".join(
            [
                "ssh",
                "-F",
                os.devnull,
                "-i",
                step["ssh_key"],
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UpdateHostKeys=no",
                "-o",
                "GlobalKnownHostsFile=" + os.devnull,
                "-o",
                "UserKnownHostsFile=" + (step.get("known_hosts") or os.devnull),
            ]
        )
    if step.get("token_file"):
        with open(step["token_file"], "rb") as f:
            token = f.read().strip()
        basic = binascii.b2a_base64(b"x-access-token:" + token, newline=False).decode()
        env["GIT_CONFIG_COUNT"] = "1"
        env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
        env["GIT_CONFIG_VALUE_0"] = "Authorization: Basic " + basic
    return env


def op_repo(step: Dict[str, Any]) -> None:
    """A repository's bare mirror: made (or repaired) as its own user, its origin set to the
    URL, then fetched under the mirror's fetch lock, as the pollers fetch it."""
    path, user = step["path"], step["user"]
    uid, gid = _ids(user, user)
    keep_dir(path)  # a mirror this program makes goes with a rollback; a fetch stays
    _makedirs(os.path.dirname(path))
    if not os.path.isdir(path):
        os.mkdir(path, 0o700)
    os.chown(path, uid, gid)
    os.chmod(path, step["mode"])
    env = _git_env(step)
    as_user = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", "--"]
    git = as_user + ["git", "--git-dir=" + path]
    # 0660: the group reads and writes every file git makes, nobody else reads any.
    init = ["git", "init", "--quiet", "--bare", "--template=", "--shared=0660", path]
    _run(as_user + init, env=env, what="git init")
    _run(git + ["config", "remote.origin.url", step["url"]], env=env, what="git config")
    _run(
        git + ["config", "--unset-all", "remote.origin.fetch"],
        env=env,
        what="git config",
        ok=(0, 5),
    )
    for refspec in step["refspecs"]:
        add = ["config", "--add", "remote.origin.fetch", refspec]
        _run(git + add, env=env, what="git config")
    # Hooks never run from the mirror (a worker could put one there for another to run), and
    # its config is not the group's to change.
    _run(git + ["config", "core.hooksPath", os.devnull], env=env, what="git config")
    os.chmod(os.path.join(path, "config"), 0o640)
    fd = os.open(os.path.join(path, step["lock"]), os.O_RDWR | os.O_CREAT, 0o660)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o660)
        fcntl.flock(fd, fcntl.LOCK_EX)
        fetch = ["fetch", "--quiet", "--no-tags", "--prune", "--no-write-fetch-head", "origin"]
        _run(git + fetch, timeout=step["timeout"], env=env, what="git fetch " + step["url"])
    finally:
        os.close(fd)
    # What observing reads: the mirror was fetched from this URL (until then, it is planned).
    write_file(os.path.join(path, REPO_MARKER), (step["url"] + "\n").encode(), user, user, 0o640)


# The package managers a system package is installed with, the first found on the PATH.
PACKAGE_MANAGERS = (
    ("apt-get", ["apt-get", "install", "-y", "-q", "--no-install-recommends"]),
    ("dnf", ["dnf", "install", "-y", "-q"]),
    ("yum", ["yum", "install", "-y", "-q"]),
    ("zypper", ["zypper", "--non-interactive", "--quiet", "install"]),
    ("apk", ["apk", "add", "--no-cache", "--quiet"]),
)


def op_system_package(step: Dict[str, Any]) -> None:
    """A program the host's own package manager provides (git): installed when missing,
    then run once (`--version`) to prove it works."""
    name, command = step["package"], step["command"]
    if _which(command) is None:
        found = [argv for tool, argv in PACKAGE_MANAGERS if _which(tool)]
        if not found:
            raise StepError(
                "{} is not installed and no package manager was found (apt-get, dnf, yum, "
                "zypper, apk): install {} on the host".format(command, name)
            )
        env = {"PATH": UNIT_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        try:
            _run(found[0] + [name], timeout=step["timeout"], env=env)
        except StepError:
            if found[0][0] != "apt-get":
                raise
            _run(["apt-get", "update", "-q"], timeout=step["timeout"], env=env)
            _run(found[0] + [name], timeout=step["timeout"], env=env)
    where = _which(command)
    if where is None:
        raise StepError("{} was installed but {} is not on the PATH".format(name, command))
    _run([where, "--version"], timeout=60)


OPS: Dict[str, Callable[[Dict[str, Any]], Any]] = {
    "user": op_user,
    "dir": op_dir,
    "file": op_file,
    "remove_file": op_remove_file,
    "sshd_config": op_sshd_config,
    "remove_sshd_config": op_remove_sshd_config,
    "remove_dir": op_remove_dir,
    "remove_user": op_remove_user,
    "remove_package": op_remove_package,
    "remove_empty_dir": op_remove_empty_dir,
    "systemctl": op_systemctl,
    "install_poller": op_install_poller,
    "install_binary": op_install_binary,
    "install_tree": op_install_tree,
    "repo": op_repo,
    "system_package": op_system_package,
    "parallel": op_parallel,
}


def apply(req: Dict[str, Any]) -> int:
    for i, step in enumerate(req["steps"]):
        started = time.monotonic()
        try:
            said = OPS[step["op"]](step)
        except StepError as e:
            _emit({"i": i, "ok": False, "error": str(e)})
            return 1
        except OSError as e:
            where = e.filename or step.get("path") or step["op"]
            _emit({"i": i, "ok": False, "error": "{}: {}".format(where, e.strerror)})
            return 1
        event: Dict[str, Any] = {"i": i, "ok": True}
        event["seconds"] = round(time.monotonic() - started, 3)
        if isinstance(said, dict):  # what an operation reports (a restore: the units it started)
            event["said"] = said
        _emit(event)
    return 0


OPERATIONS["apply"] = apply
