"""fleetctl's host lock: held for as long as fleetctl's connection to the host lives.

Run as `python3 -c SOURCE LOCKFILE INFO_JSON WAIT_SECONDS LEASE_SECONDS`, where SOURCE is the
agent followed by this file. It takes an flock on LOCKFILE (waiting up to WAIT_SECONDS),
records who holds it, prints one JSON line, then reads lines on stdin: an empty line is a
heartbeat, a JSON line an observe request, answered with one JSON line (so an apply observes
under its lock without starting a second process). It exits, and the kernel drops the lock,
when fleetctl closes the channel (done, or killed) or when no heartbeat came for
LEASE_SECONDS (the network between them broke, which the host's sshd may not notice for hours).
"""

import fcntl
import os
import select
import sys
import time

# Sent after the agent in one program: its observe and its start-up-cheap JSON codec.
_AGENT = globals()


def hold(path: str, info: str, wait: float, lease: float) -> int:
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 4096).decode("utf-8", "replace")
                try:
                    parsed = _AGENT["json_loads"](holder)
                except ValueError:
                    parsed = {"raw": holder}
                print(_AGENT["json_dumps"]({"locked": False, "holder": parsed}), flush=True)
                return 3
            time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, info.encode("utf-8"))
    os.fsync(fd)
    print(_AGENT["json_dumps"]({"locked": True}), flush=True)
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        ready, _, _ = select.select([stdin], [], [], lease)
        chunk = os.read(stdin, 1 << 16) if ready else b""
        if not chunk:
            return 0
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                answer = _AGENT["observe"](_AGENT["json_loads"](line.decode("utf-8")))
                print(_AGENT["json_dumps"](answer), flush=True)


if __name__ == "__main__":
    sys.exit(hold(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
