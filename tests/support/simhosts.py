"""Simulated SSH hosts for end-to-end tests: one Linux network namespace per host.

Each host is its own network, mount, PID and UTS namespace, with a copy-on-write root
filesystem (an overlay whose lower layer is this machine's /) and its own sshd. The hosts
share a private LAN (a bridge in a separate network namespace) on `SUBNET`.0/24; nothing is
added to the machine's own network namespace, so test traffic never leaves the namespaces.

    with SimNet(tmp_path / "net", ["broker-host", "worker-1"]) as net:
        host = net.hosts["broker-host"]
        host.run(["systemctl", "is-active", "x.service"])           # inside the host, as root
        subprocess.run(net.lan_argv([".venv/bin/fleetctl", ...]))   # can reach 10.213.0.x
        subprocess.run(net.ssh_argv("worker-1", ["hostname"]))      # OpenSSH + net.ssh_config
        conn = net.connect("worker-1")                              # Fabric, strict host keys
        with net.in_lan():                   # this thread, in-process: connect sockets here
            client.connect(host.address, ...)
        host.file("/etc/systemd/system/x.service").read_text()      # what the host wrote
        host.set_reachable(False); host.reboot()

What each host has:
- sshd on port 22: key-only login (root with `SimNet.client_key`; any other user with a key in
  its ~/.ssh/authorized_keys, e.g. one made by `useradd --system -p '*'`), TCP forwarding,
  SFTP, its own ed25519 host key. `UsePAM no` (as the recipe), so an account whose password
  is locked ('!', plain `useradd`) is refused even with a key; `SimNet(use_pam=True)` makes
  sshd behave like Debian's default (keys work for locked accounts).
- /usr/bin/systemctl: docker-systemctl-replacement (systemctl3.py), with shorter sleeps. No
  Restart= (that needs it as PID 1), no cgroups, logs in /var/log/journal/<unit>.log, which
  /usr/bin/journalctl (a shim: -u, -n, -f) prints.
- PID 1 is a small reaper that runs sshd as a child, so services started over SSH outlive
  the SSH session and never linger as zombies.
- A clean /root (with /etc/skel's dotfiles), and empty /home, /opt, /srv, /etc/init.d,
  /etc/systemd/system and /usr/lib/systemd/system (but for the *.target units); /run and
  /tmp are fresh tmpfs at every boot. The rest of / is this machine's (read-only below).
- /etc/hosts naming every host of the net; /etc/hostname; its own /etc/machine-id.
- No route out of the LAN.

Files a host writes land in `SimHost.upper` (see `SimHost.file`). Needs root; see
`skip_reason()`. Build a SimNet on the main thread: each host dies with the thread that
started it (PR_SET_PDEATHSIG), so nothing outlives a crashed test run; namespaces a crashed
run leaves behind are removed by the next SimNet. This module is also the hosts' PID 1
(`python3 -c "import simhosts; ..."`), so it imports only the standard library at module level.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import itertools
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

SUBNET = "10.213.0"
LAN_ADDRESS = f"{SUBNET}.254"
NETNS_PREFIX = "fsim"
HOST_PYTHON = "/usr/bin/python3"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Directories that start empty on every host (opaque in the overlay). The machine's own
# units are hidden too (only its *.target files are kept): else every `systemctl
# daemon-reload` reports ~100 problems in units that cannot run here anyway. So are its SysV
# init scripts (systemctl3.py would start them at boot, e.g. this machine's postgresql).
CLEAN_DIRS = (
    "root", "home", "opt", "srv", "etc/systemd/system", "usr/lib/systemd/system", "etc/init.d",
    *(f"etc/rc{level}.d" for level in "0123456S"),
)  # fmt: skip
UNIT_DIR = Path("/usr/lib/systemd/system")
SHARED_LAYER_DIR = Path("/dev/shm")

_TOOLS = ("ip", "nsenter", "unshare", "setpriv", "useradd")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_STALE_RE = re.compile(rf"^{NETNS_PREFIX}(\d+)-\d+-")
_CLONE_NEWNET = 0x40000000
_counter = itertools.count()


# --------------------------------------------------------------------------- availability


def _systemctl3_source() -> Path | None:
    """docker-systemctl-replacement's single-file systemctl (package `systemctl2`)."""
    try:
        spec = importlib.util.find_spec("systemctl2")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "systemctl3.py"
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def skip_reason() -> str | None:
    """None if this machine can build simulated hosts, else why not (for pytest.skip)."""
    if not sys.platform.startswith("linux"):
        return "simulated hosts need Linux namespaces"
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces, overlay mounts, sshd)"
    missing = [tool for tool in _TOOLS if shutil.which(tool, path=CLEAN_PATH) is None]
    missing += [p for p in ("/usr/sbin/sshd", HOST_PYTHON) if not Path(p).exists()]
    if missing:
        return f"simulated hosts need {', '.join(missing)} (run ./dev test as root to install)"
    if _systemctl3_source() is None:
        return "docker-systemctl-replacement (systemctl3.py) is not installed: ./dev setup"
    if importlib.util.find_spec("cryptography") is None:
        return "the cryptography package (a paramiko dependency) is not installed"
    filesystems = Path("/proc/filesystems").read_text()
    if "overlay" not in filesystems:
        subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "the kernel has no overlay filesystem"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--uts", "--fork", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        err = probe.stderr.decode(errors="replace").strip()
        return f"cannot create namespaces here: {err}"
    return None


# --------------------------------------------------------------------------- keys and files


def _ed25519_keypair(comment: str) -> tuple[bytes, str]:
    """(OpenSSH private key, 'ssh-ed25519 AAAA... comment')."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, f"{public.decode()} {comment}"


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


# The test copy of systemctl3.py: same behaviour, shorter fixed sleeps.
_SYSTEMCTL_PATCHES = (
    # after forking a service it sleeps this long before checking that it did not die at once
    ("MinimumYield: float = 0.5", "MinimumYield: float = {yield_}"),
    # stop: it polls once a second for the killed process to vanish
    (
        "for attempt in range(int(timeout)):\n            time.sleep(1) # until TimeoutStopSec",
        "for attempt in range(int(timeout) * 20):\n"
        "            time.sleep(0.05) # until TimeoutStopSec",
    ),
    ("time.sleep(1) # until TimeoutStopSec\n", "time.sleep(0.05) # until TimeoutStopSec\n"),
    # Environment="A=[\"x\"]": systemd undoes the backslash escapes inside quotes
    # (systemd.exec(5)); the replacement's regex does not, and fleetctl's units rely on them.
    (
        """                for found in re.finditer(r'\\s*("[\\w_]+=[^"]*"|[\\w_]+=\\S*)', line):
                    part = found.group(1)
                    if part.startswith('"'):
                        part = part[1:-1]
                    name, value = part.split("=", 1)
                    yield name, value""",
        """                import shlex
                for part in shlex.split(line):
                    if "=" in part:
                        name, value = part.split("=", 1)
                        yield name, value""",
    ),
)
# `systemctl is-active` for plain services answered from the status files the replacement
# itself writes (/run/<unit>.status: ActiveState, else MainPID), in POSIX sh, without
# starting Python and the replacement's 7,000 lines (60 ms of CPU per call; a Python fast
# path still cost 12-15 ms, against systemd's own 3-5). On 21 hosts sharing 2 cores that
# was a large share of the reconcile bench. Anything else, or SIMHOSTS_FULL_SYSTEMCTL=1,
# goes to the replacement; the lifecycle self-test checks both give the same answers.
_SYSTEMCTL_WRAPPER = (
    r"""#!/bin/sh
trim() {  # sets $trimmed: $1 without leading and trailing whitespace (no subshell)
    trimmed=${1#"${1%%[![:space:]]*}"}
    trimmed=${trimmed%"${trimmed##*[![:space:]]}"}
}

fast_is_active() {  # sets $states, one per unit; returns 1 when the replacement must answer
    states=""
    for unit in "$@"; do
        case $unit in -* | */* | *[!A-Za-z0-9@._:-]*) return 1 ;; *.service) ;; *) return 1 ;; esac
        [ -f "/etc/systemd/system/$unit" ] || return 1
        while IFS= read -r line || [ -n "$line" ]; do
            case $line in *PIDFile=*) return 1 ;; esac
        done <"/etc/systemd/system/$unit"
        active="" pid=""
        if [ -f "/run/$unit.status" ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                case $line in *[:=]*) value=${line#*[:=]} ;; *) value="" ;; esac
                trim "${line%%[:=]*}"
                case $trimmed in
                    ActiveState) trim "$value" && active=$trimmed ;;
                    MainPID) trim "$value" && pid=$trimmed ;;
                esac
            done <"/run/$unit.status"
        fi
        if [ -n "$active" ]; then
            state=$active
        elif [ -z "$pid" ]; then
            state=inactive
        else
            state=failed
            case $pid in *[!0-9]*) ;; *)
                if [ -r "/proc/$pid/stat" ] && IFS= read -r stat <"/proc/$pid/stat"; then
                    set -f
                    set -- ${stat##*)}
                    set +f
                    [ $# -gt 0 ] && [ "$1" != Z ] && state=active
                fi
            esac
        fi
        states="$states${states:+
}$state"
    done
}

if [ "$1" = is-active ] && [ $# -gt 1 ] && [ -z "$SIMHOSTS_FULL_SYSTEMCTL" ]; then
    shift
    if fast_is_active "$@"; then
        printf '%s\n' "$states"
        for state in $states; do [ "$state" = active ] || exit 3; done
        exit 0
    fi
    set -- is-active "$@"
    [ -z "$SIMHOSTS_FAST_ONLY" ] || exit 98  # lets the self-test see which path answered
fi
exec """
    + HOST_PYTHON
    + """ -S /usr/lib/simhosts/systemctl "$@"
"""
)
# docker-systemctl-replacement, imported so that its bytecode is cached (saves ~70 ms a call)
_SYSTEMCTL_FULL = f"""#!{HOST_PYTHON} -S
import sys
sys.path.insert(0, "/usr/lib/simhosts")
import systemctl3
sys.exit(systemctl3.main())
"""

_JOURNALCTL = f"""#!{HOST_PYTHON} -S
# simhosts: journalctl for services run by docker-systemctl-replacement, which appends their
# output to /var/log/journal/<unit>.log. Prints it as `journalctl -o cat` would; -u (repeatable),
# -n and -f are honoured, other options (--no-pager, -o, --since...) are ignored.
import argparse, collections, os, sys
p = argparse.ArgumentParser(prog="journalctl")
p.add_argument("-u", "--unit", action="append", default=[])
p.add_argument("-n", "--lines", default=None)
p.add_argument("-f", "--follow", action="store_true")
args, _ = p.parse_known_args()
units = [u if "." in u else u + ".service" for u in args.unit]
paths = [f"/var/log/journal/{{u}}.log" for u in units]
n = None if args.lines in (None, "all", "+0") else int(args.lines)
if args.follow:
    os.execvp("tail", ["tail", "-n", str(n if n is not None else 10), "-F", *paths])
out = collections.deque(maxlen=n) if n is not None else []
for path in paths:
    try:
        with open(path, errors="replace") as f:
            out.extend(f)
    except FileNotFoundError:
        pass
if not out:
    print("-- No entries --")
sys.stdout.writelines(out)
"""


@functools.cache
def _systemctl_bundle(yield_: float) -> tuple[bytes, bytes, str]:
    """(patched systemctl3.py source, its unchecked-hash .pyc, the .pyc file name)."""
    import py_compile
    import warnings

    source_path = _systemctl3_source()
    if source_path is None:
        raise RuntimeError("docker-systemctl-replacement is not installed")
    text = source_path.read_text()
    for old, new in _SYSTEMCTL_PATCHES:
        if old not in text:
            warnings.warn(
                f"simhosts: systemctl3.py has changed; not patched: {old!r}", stacklevel=2
            )
        text = text.replace(old, new.replace("{yield_}", str(yield_)))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "systemctl3.py"
        src.write_text(text)
        pyc = Path(tmp) / "systemctl3.pyc"
        py_compile.compile(
            str(src),
            cfile=str(pyc),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return text.encode(), pyc.read_bytes(), f"systemctl3.{sys.implementation.cache_tag}.pyc"


def _sshd_config(use_pam: bool) -> str:
    return f"""\
# simhosts: one simulated host's sshd
# Drop-ins first, as in Debian's and Fedora's default sshd_config (first value wins).
Include /etc/ssh/sshd_config.d/*.conf
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM {"yes" if use_pam else "no"}
UseDNS no
StrictModes yes
AllowTcpForwarding yes
GatewayPorts no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 100
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel INFO
"""


# --------------------------------------------------------------------------- namespaces


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, nstype: int) -> None:
    if _libc().setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def _kill_processes_in(netns_names: list[str]) -> None:
    """SIGKILL every process (but this one) whose network namespace is one of these."""
    inodes = {ino for name in netns_names if (ino := _netns_inode(name)) is not None}
    if not inodes:
        return
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def _delete_netns(names: list[str]) -> None:
    if names:
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns delete {n}\n" for n in names).encode(),
            capture_output=True,
            check=False,
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(names: list[str]) -> list[str]:
    """The names (with our prefix) made by a process that is gone."""
    out = []
    for name in names:
        m = _STALE_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            out.append(name)
    return out


def cleanup_stale() -> list[str]:
    """Remove namespaces (and shared layers) left by an earlier run that crashed."""
    try:
        stale = _stale(os.listdir("/run/netns"))
    except FileNotFoundError:
        stale = []
    _kill_processes_in(stale)
    _delete_netns(stale)
    with contextlib.suppress(OSError):
        for name in _stale(os.listdir(SHARED_LAYER_DIR)):
            shutil.rmtree(SHARED_LAYER_DIR / name, ignore_errors=True)
            stale.append(name)
    return stale


def _shared_layer_dir() -> Path | None:
    """Where a lower layer shared by all hosts can be: it must not be on /'s filesystem
    (overlayfs refuses overlapping lower layers), so in /dev/shm if that is a tmpfs."""
    try:
        if SHARED_LAYER_DIR.is_dir() and os.stat(SHARED_LAYER_DIR).st_dev != os.stat("/").st_dev:
            return SHARED_LAYER_DIR
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- hosts


@dataclass
class SimHost:
    """One simulated host. Build it through `SimNet`."""

    name: str
    address: str
    upper: Path
    host_key_line: str
    netns: str = field(repr=False)
    lan_netns: str = field(repr=False)
    veth: str = field(repr=False)
    dir: Path = field(repr=False)
    pid1: int = field(default=0, repr=False)  # the host's PID 1, as seen from here
    lower: str = field(default="/", repr=False)  # overlay lowerdir (SimNet: its base layer, /)
    _launcher: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        """PID 1's and sshd's stderr (sshd runs with -e)."""
        return self.dir / "host.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def file(self, path: str) -> Path:
        """Where a file the host wrote at `path` is (its overlay upper layer). Read it freely;
        to change files while the host runs, prefer `write_file` (overlayfs does not promise
        that the running host sees changes made behind its back, e.g. to a path it has
        already looked up and found missing)."""
        return self.upper / path.lstrip("/")

    def write_file(
        self, path: str, data: str | bytes, *, mode: int = 0o644, owner: str = "root"
    ) -> None:
        """Write a file inside the running host (parent directories created, root-owned)."""
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1" && chown "$3" "$1"'
        done = self.run(
            ["sh", "-c", script, "sh", path, f"{mode:o}", owner],
            input=data.encode() if isinstance(data, str) else data,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: writing {path}: {done.stderr.decode().strip()}")

    def run(
        self,
        argv: list[str],
        *,
        input: bytes | None = None,
        timeout: float = 30,
        check: bool = False,
        user: str | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command inside the host (as root or `user`), with a clean login-like env."""
        if not self.running:
            raise RuntimeError(f"{self.name} is not running")
        home = "/root"
        if user is not None:
            home = self._home_of(user)
            argv = ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--", *argv]
        env = ["env", "-i", f"PATH={CLEAN_PATH}", "LANG=C.UTF-8", f"HOME={home}"]
        env.append(f"USER={user or 'root'}")
        full = [
            "nsenter", "-t", str(self.pid1), "-m", "-u", "-n", "-p", "-r", "-w", "--",
            *env, *argv,
        ]  # fmt: skip
        return subprocess.run(full, input=input, capture_output=True, timeout=timeout, check=check)

    def _home_of(self, user: str) -> str:
        passwd = self.file("/etc/passwd")
        text = (passwd if passwd.exists() else Path("/etc/passwd")).read_text()
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 6 and fields[0] == user:
                return fields[5]
        raise KeyError(f"no user {user!r} on {self.name}")

    def set_reachable(self, up: bool) -> None:
        """Cut (False) or restore (True) the host's link to the LAN."""
        subprocess.run(
            ["ip", "-n", self.lan_netns, "link", "set", self.veth, "up" if up else "down"],
            check=True,
            capture_output=True,
        )

    @property
    def running(self) -> bool:
        return self._launcher is not None and self._launcher.poll() is None

    def stop(self) -> None:
        """Power off: every process of the host dies; its files (upper layer) stay."""
        launcher, self._launcher = self._launcher, None
        if launcher is None:
            return
        if self.pid1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            launcher.kill()
        launcher.wait()
        self.pid1 = 0

    def start(self, *, boot_services: bool = True, timeout: float = 20) -> None:
        """Boot (after `stop`): fresh /run and /tmp, sshd up; with `boot_services`, start
        the services enabled in multi-user.target.wants, as systemd would at boot."""
        if self.running:
            return
        wait_ready([self._launch(boot_services=boot_services)], timeout)

    def reboot(self, *, boot_services: bool = True, timeout: float = 20) -> None:
        self.stop()
        self.start(boot_services=boot_services, timeout=timeout)

    def _launch(self, *, boot_services: bool) -> tuple[SimHost, int]:
        """Start PID 1 (returns at once); `wait_ready` waits for its sshd to listen."""
        read_fd, write_fd = os.pipe()
        cfg = {
            "name": self.name,
            "address": self.address,
            "lower": self.lower,
            "upper": str(self.upper),
            "work": str(self.dir / "work"),
            "root": str(self.dir / "root"),
            "ready_fd": write_fd,
            "boot_services": boot_services,
        }
        argv = [
            "setpriv", "--pdeathsig", "KILL",
            "nsenter", f"--net=/run/netns/{self.netns}",
            "unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child=SIGKILL",
            HOST_PYTHON, "-I", "-S", "-c", _INIT_CODE, str(Path(__file__).resolve().parent),
            json.dumps(cfg),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            try:
                # PR_SET_PDEATHSIG is per thread: this must run on a thread that outlives
                # the host (the main thread), or the host dies with the thread.
                self._launcher = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(write_fd,),
                    env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8"},
                )
            finally:
                os.close(write_fd)
        return self, read_fd


def wait_ready(launched: list[tuple[SimHost, int]], timeout: float) -> None:
    """Wait until every launched host reports (one line) its PID 1 with sshd listening."""
    deadline = time.monotonic() + timeout
    buffers = {fd: b"" for _, fd in launched}
    hosts = {fd: host for host, fd in launched}
    sel = selectors.DefaultSelector()
    for fd in buffers:
        sel.register(fd, selectors.EVENT_READ)
    errors: list[str] = []

    def done(fd: int, message: str) -> None:
        sel.unregister(fd)
        if message.isdigit():
            hosts[fd].pid1 = int(message)
        else:
            errors.append(f"{hosts[fd].name}: {message}")

    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                for key in list(sel.get_map().values()):
                    done(key.fd, f"not ready after {timeout} s")
                break
            # (the launcher keeps the pipe's write end open: read lines, not to EOF)
            for key, _ in sel.select(min(left, 0.2)):
                fd = key.fd
                chunk = os.read(fd, 4096)
                buffers[fd] += chunk
                if b"\n" in buffers[fd] or not chunk:
                    done(fd, buffers[fd].decode(errors="replace").strip() or "PID 1 exited")
            for key in list(sel.get_map().values()):
                launcher = hosts[key.fd]._launcher
                if launcher is not None and launcher.poll() is not None:
                    done(key.fd, f"PID 1 exited ({launcher.returncode})")
    finally:
        sel.close()
        for fd in buffers:
            os.close(fd)
    if errors:
        logs = "\n".join(
            f"--- {hosts[fd].name} log:\n{hosts[fd].log()[-2000:]}"
            for fd in buffers
            if not hosts[fd].pid1
        )
        raise RuntimeError("simulated hosts did not start:\n" + "\n".join(errors) + "\n" + logs)


# --------------------------------------------------------------------------- the net


class SimNet:
    """A LAN of simulated hosts; a context manager that tears everything down on exit.

    Hosts get addresses SUBNET.1, .2, ... in the order of `names`; the LAN namespace itself
    is SUBNET.254 (a server started with `lan_argv` can listen there for the hosts).
    `workdir`: where the hosts' layers, the client key, known_hosts and ssh_config go
    (removed on exit unless `keep_files`). `systemctl_yield`: how long systemctl waits after
    starting a service to see whether it died at once (the package's default is 0.5 s).
    `use_pam`: sshd's UsePAM (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        names: list[str],
        *,
        keep_files: bool = False,
        systemctl_yield: float = 0.1,
        use_pam: bool = False,
        start_timeout: float = 20,
    ) -> None:
        reason = skip_reason()
        if reason is not None:
            raise RuntimeError(reason)
        if len(set(names)) != len(names) or not 0 < len(names) <= 250:
            raise ValueError(f"need 1..250 distinct host names: {names}")
        for name in names:
            if not _NAME_RE.match(name):
                raise ValueError(f"not a valid host name: {name!r}")
        self.workdir = workdir = workdir.resolve()
        if any(c in str(workdir) for c in ",:\\"):
            raise ValueError(f"overlay mount options cannot hold this path: {workdir}")
        self.keep_files = keep_files
        self.use_pam = use_pam
        self.tag = f"{NETNS_PREFIX}{os.getpid()}-{next(_counter)}"
        self.lan = f"{self.tag}-lan"
        self.hosts: dict[str, SimHost] = {}
        self._netns: list[str] = []
        self._closed = False
        self._dirs: list[Path] = []

        ssh_dir = workdir / "ssh"
        self.client_key = ssh_dir / "client_key"
        self.known_hosts = ssh_dir / "known_hosts"
        self.ssh_config = ssh_dir / "ssh_config"
        try:
            self._build(names, systemctl_yield, start_timeout)
        except BaseException:
            self.close()
            raise

    def _build(self, names: list[str], systemctl_yield: float, start_timeout: float) -> None:
        cleanup_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        ssh_dir = self.ssh_config.parent
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        self._dirs.append(ssh_dir)
        hosts_dir = self.workdir / "hosts"
        hosts_dir.mkdir(exist_ok=True)
        self._dirs.append(hosts_dir)

        client_private, client_public = _ed25519_keypair("simhosts-client")
        _write(self.client_key, client_private, 0o600)
        _write(self.client_key.with_name("client_key.pub"), client_public + "\n", 0o644)

        for i, name in enumerate(names):
            hdir = hosts_dir / name
            for sub in ("upper", "work", "root"):
                (hdir / sub).mkdir(parents=True)
            self.hosts[name] = SimHost(
                name=name,
                address=f"{SUBNET}.{i + 1}",
                upper=hdir / "upper",
                host_key_line="",
                netns=f"{self.tag}-h{i}",
                lan_netns=self.lan,
                veth=f"v{i}",
                dir=hdir,
            )
        shared = _shared_layer_dir()
        self._prepare_base(
            shared / f"{self.tag}-base" if shared else self.workdir / "base",
            client_public,
            etc_hosts="127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            + "".join(f"{h.address}\t{h.name}\n" for h in self.hosts.values()),
            systemctl=_systemctl_bundle(systemctl_yield),
        )
        for host in self.hosts.values():
            host.host_key_line = self._prepare_upper(host)

        # known_hosts and ssh_config for clients on the LAN
        _write(
            self.known_hosts,
            "".join(f"{h.address},{h.name} {h.host_key_line}\n" for h in self.hosts.values()),
        )
        _write(self.ssh_config, self._ssh_config_text())

        # network: the LAN bridge, one veth pair per host (host end is eth0)
        self._netns = [self.lan, *(h.netns for h in self.hosts.values())]
        ip_batch(["netns add " + n for n in self._netns])
        lan_cmds = [
            "link set lo up",
            "link add br0 type bridge",
            f"addr add {LAN_ADDRESS}/24 dev br0",
            "link set br0 up",
        ]
        for h in self.hosts.values():
            lan_cmds.append(f"link add {h.veth} type veth peer name eth0 netns {h.netns}")
            lan_cmds.append(f"link set {h.veth} master br0 up")
        ip_batch(lan_cmds, netns=self.lan)

        launched = [h._launch(boot_services=False) for h in self.hosts.values()]
        wait_ready(launched, start_timeout)

    def _prepare_base(
        self,
        base: Path,
        client_public: str,
        etc_hosts: str,
        systemctl: tuple[bytes, bytes, str],
    ) -> None:
        """The layer shared by every host, between its upper layer and this machine's /."""
        base.mkdir()
        self._dirs.append(base)
        for d in CLEAN_DIRS:
            path = base / d
            path.mkdir(parents=True, exist_ok=True)
            os.setxattr(path, "trusted.overlay.opaque", b"y")
        for t in sorted(UNIT_DIR.glob("*.target")) if UNIT_DIR.is_dir() else []:
            # (not the initrd ones: they assert /etc/initrd-release, so every command warns)
            if t.is_symlink() or "Assert" not in t.read_text(errors="replace"):
                shutil.copy2(t, base / "usr/lib/systemd/system" / t.name, follow_symlinks=False)
        for f in Path("/etc/skel").iterdir():
            if f.is_file():
                shutil.copy2(f, base / "root" / f.name)
        _write(base / "root/.ssh/authorized_keys", client_public + "\n", 0o600)
        _write(base / "etc/ssh/sshd_config", _sshd_config(self.use_pam))
        _write(base / "etc/hosts", etc_hosts)
        source, pyc, pyc_name = systemctl
        _write(base / "usr/bin/systemctl", _SYSTEMCTL_WRAPPER, 0o755)
        _write(base / "usr/lib/simhosts/systemctl", _SYSTEMCTL_FULL, 0o755)
        _write(base / "usr/bin/journalctl", _JOURNALCTL, 0o755)
        _write(base / "usr/lib/simhosts/systemctl3.py", source)
        _write(base / "usr/lib/simhosts/__pycache__" / pyc_name, pyc)
        # a directory's owner and mode come from the top layer that has it
        for dirpath, _, _ in os.walk(base):
            Path(dirpath).chmod(0o755)
        for private in (base / "root", base / "root/.ssh"):
            private.chmod(0o700)
        for host in self.hosts.values():
            if _shared_layer_dir() is None:  # then each host gets its own copy (slower)
                shutil.copytree(base, host.upper, symlinks=True, dirs_exist_ok=True)
            else:
                host.lower = f"{base}:/"

    def _prepare_upper(self, host: SimHost) -> str:
        """The host's own files: its host key, name and machine id."""
        up = host.upper
        private, public = _ed25519_keypair(f"root@{host.name}")
        _write(up / "etc/ssh/ssh_host_ed25519_key", private, 0o600)
        _write(up / "etc/ssh/ssh_host_ed25519_key.pub", public + "\n")
        _write(up / "etc/hostname", host.name + "\n")
        _write(up / "etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
        for d in (up / "etc", up / "etc/ssh"):
            d.chmod(0o755)
        return " ".join(public.split()[:2])

    def _ssh_config_text(self) -> str:
        out = []
        for h in self.hosts.values():
            out.append(
                f"Host {h.name} {h.address}\n"
                f"    HostName {h.address}\n"
                "    User root\n"
                "    Port 22\n"
                f"    IdentityFile {self.client_key}\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                "    IdentitiesOnly yes\n"
                "    BatchMode yes\n"
                "    ConnectTimeout 5\n"
                "    LogLevel ERROR\n"
            )
        return "\n".join(out)

    # ------------------------------------------------------------------ use

    def lan_argv(self, argv: list[str]) -> list[str]:
        """`argv`, run in the LAN namespace (it can reach every host's address)."""
        return ["ip", "netns", "exec", self.lan, *argv]

    def ssh_argv(self, host: str, command: list[str] | None = None) -> list[str]:
        """OpenSSH client command to run `command` on `host` (name or address)."""
        return self.lan_argv(["ssh", "-F", str(self.ssh_config), host, *(command or [])])

    def connect(self, host: str, *, user: str = "root", timeout: float = 5) -> Any:
        """An open Fabric Connection to `host` (name or address) with the client key and
        strict host key checking (Fabric alone would auto-add any key)."""
        import paramiko
        from fabric import Config, Connection

        address = self.hosts[host].address if host in self.hosts else host
        conn = Connection(
            address,
            user=user,
            port=22,
            # (not connect_timeout=: Fabric makes it an int, so 0.5 would mean no timeout)
            connect_kwargs={
                "timeout": timeout,
                "key_filename": str(self.client_key),
                "look_for_keys": False,
                "allow_agent": False,
            },
            config=Config(overrides={"run": {"in_stream": False}}),
        )
        conn.client.load_host_keys(str(self.known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        with self.in_lan():
            conn.open()
        return conn

    @contextlib.contextmanager
    def in_lan(self) -> Iterator[None]:
        """Move the calling thread into the LAN namespace for the block. Sockets (and
        threads) created inside stay there: connect paramiko/Fabric clients in the block."""
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            lan = os.open(f"/run/netns/{self.lan}", os.O_RDONLY)
            try:
                _setns(lan, _CLONE_NEWNET)
                try:
                    yield
                finally:
                    _setns(here, _CLONE_NEWNET)
            finally:
                os.close(lan)
        finally:
            os.close(here)

    # ------------------------------------------------------------------ teardown

    def __enter__(self) -> SimNet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill every host and every process in the namespaces, delete them, remove files."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            if host.pid1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host.pid1, signal.SIGKILL)
            if host._launcher is not None:
                with contextlib.suppress(ProcessLookupError):
                    host._launcher.kill()
        for host in self.hosts.values():
            host.stop()
        _kill_processes_in(self._netns)
        _delete_netns(self._netns)
        if not self.keep_files:
            for d in self._dirs:
                shutil.rmtree(d, ignore_errors=True)


def ip_batch(commands: list[str], *, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    result = subprocess.run(
        argv, input="".join(c + "\n" for c in commands).encode(), capture_output=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode(errors='replace')}")


# --------------------------------------------------------------------------- PID 1

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000


def _mount(
    source: str, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    libc = _libc()
    rc = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _sshd_listening() -> bool:
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1].endswith(":0016") and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def _spawn(argv: list[str]) -> int:
    env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"}
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, start_new_session=True).pid


def _init_main(cfg: dict[str, Any]) -> NoReturn:
    """PID 1 of a simulated host: set up its root, run sshd, reap every orphan."""
    ready_fd: int = cfg["ready_fd"]
    try:
        outer_pid = os.readlink("/proc/self")  # the machine's /proc: our PID out there
        _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
        socket.sethostname(cfg["name"])
        root = cfg["root"]
        overlay = f"lowerdir={cfg['lower']},upperdir={cfg['upper']},workdir={cfg['work']}"
        _mount("overlay", root, "overlay", 0, overlay)
        _mount("proc", f"{root}/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        _mount("sysfs", f"{root}/sys", "sysfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        _mount("/dev", f"{root}/dev", None, _MS_BIND | _MS_REC)
        _mount("tmpfs", f"{root}/run", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755")
        _mount("tmpfs", f"{root}/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")
        net = f"link set lo up\naddr replace {cfg['address']}/24 dev eth0\nlink set eth0 up\n"
        subprocess.run(["ip", "-batch", "-"], input=net.encode(), check=True)
        os.chroot(root)
        os.chdir("/")
        for d in ("/run/sshd", "/run/systemd/system", "/run/lock"):
            os.makedirs(d, mode=0o755, exist_ok=True)
        sshd_argv = ["/usr/sbin/sshd", "-D", "-e"]
        sshd = _spawn(sshd_argv)
        deadline = time.monotonic() + 15
        while not _sshd_listening():
            pid, status = os.waitpid(sshd, os.WNOHANG)
            if pid:
                raise RuntimeError(f"sshd exited ({status}); see the host log")
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not listen on port 22 within 15 s")
            time.sleep(0.003)
        if cfg.get("boot_services"):
            # as systemd would at boot: start what is enabled (in the background)
            _spawn(["/usr/bin/systemctl", "default"])
        os.write(ready_fd, f"{outer_pid}\n".encode())
        os.close(ready_fd)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(ready_fd, f"error: {e!r}\n".encode())
        os._exit(1)

    def terminate(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    while True:  # reap everything; restart sshd if it ever exits
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            time.sleep(0.1)
            continue
        if pid == sshd:
            time.sleep(0.2)
            sshd = _spawn(sshd_argv)


# PID 1 imports this module (rather than running it as a script) to use its cached bytecode.
_INIT_CODE = "import sys, json; sys.path.insert(0, sys.argv[1]); import simhosts; simhosts._init_main(json.loads(sys.argv[2]))"  # noqa: E501
