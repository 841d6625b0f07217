"""fleetctl's host lock: held for as long as fleetctl's connection to the host lives.

Run as `python3 -c SOURCE LOCKFILE INFO_JSON WAIT_SECONDS LEASE_SECONDS`. It takes an flock
on LOCKFILE (waiting up to WAIT_SECONDS), records who holds it, prints one JSON line, then
reads fleetctl's heartbeats on stdin. It exits, and the kernel drops the lock, when fleetctl
closes the channel (done, or killed) or when no heartbeat came for LEASE_SECONDS (the network
between them broke, which the host's sshd may not notice for hours).
"""

import fcntl
import json
import os
import select
import sys
import time


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
                    parsed = json.loads(holder)
                except ValueError:
                    parsed = {"raw": holder}
                print(json.dumps({"locked": False, "holder": parsed}), flush=True)
                return 3
            time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, info.encode("utf-8"))
    os.fsync(fd)
    print(json.dumps({"locked": True}), flush=True)
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([stdin], [], [], lease)
        if not ready or not os.read(stdin, 4096):
            return 0


if __name__ == "__main__":
    sys.exit(hold(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
