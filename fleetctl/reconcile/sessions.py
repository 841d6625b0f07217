"""Host sessions: one connection per host (SSH, or local for this machine), checked against
the host keys fleetctl accepts, optionally holding the host's apply lock.

A session lives from connect to the end of apply: the lock, the observation, the uploads,
the host program and the bus forward all use the same connection.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl import layout
from fleetctl.config.model import Host
from fleetctl.hostside import lock_program
from fleetctl.reconcile.facts import ObservedHost
from fleetctl.transport.base import Held, Transport, TransportError
from fleetctl.transport.local import LocalTransport
from fleetctl.transport.ssh import SshTransport, accepted_host_keys, key_line

LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
LOCK_FILE = f"{layout.STATE_DIR}/apply.lock"
LEASE = 20  # seconds without a heartbeat after which a host drops an apply's lock


@dataclass(frozen=True)
class Options:
    ssh_config: Path | None = None
    known_hosts: tuple[str, ...] = ()
    parallel: int = 10
    lock_wait: float = 0.0
    command: str = "fleetctl"
    with_contents: bool = False
    with_usage: bool = False  # the repositories' disk use and free space (status)
    connect_timeout: float = 10.0
    settle: float = 2.0  # seconds a started unit must stay up before apply calls it done


@dataclass
class Session:
    host: Host
    transport: Transport
    lock: Held | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the agent's answer
    observed: ObservedHost = field(default_factory=ObservedHost)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.close()
        self.transport.close()


class LockedError(TransportError):
    pass


def connect(host: Host, options: Options) -> Transport:
    if host.address in LOCAL_ADDRESSES:
        return LocalTransport(host.name)
    return SshTransport(
        host.name,
        host.address,
        user=host.user,
        port=host.port,
        pinned_key=host.host_key,
        ssh_config=options.ssh_config,
        known_hosts=options.known_hosts,
        connect_timeout=options.connect_timeout,
    )


def sole_accepted_key(host: Host, options: Options) -> str | None:
    """The one SSH key `host` can present to be accepted, if there is only one."""
    if host.address in LOCAL_ADDRESSES:
        return None
    keys, _ = accepted_host_keys(
        host.address,
        host.port,
        pinned_key=host.host_key,
        ssh_config=options.ssh_config,
        known_hosts=options.known_hosts,
    )
    return key_line(keys[0]) if len(keys) == 1 else None


def presented_key(session: Session) -> str | None:
    """The SSH host key the host presented when fleetctl connected (None: not over SSH)."""
    transport = session.transport
    return transport.presented_key_line if isinstance(transport, SshTransport) else None


def take_lock(transport: Transport, options: Options) -> Held:
    info = json.dumps(
        {
            "owner": f"{getpass.getuser()}@{socket.gethostname()}",
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": options.command,
        }
    )
    held = transport.hold(
        [
            "python3",
            "-I",
            "-S",
            "-c",
            lock_program(),
            LOCK_FILE,
            info,
            str(options.lock_wait),
            str(LEASE),
        ]
    )
    line = held.readline()
    try:
        answer = json.loads(line)
    except ValueError:
        held.close()
        raise TransportError(transport.name, "could not take the apply lock") from None
    if not answer.get("locked"):
        held.close()
        h = answer.get("holder") or {}
        raise LockedError(
            transport.name,
            f"another apply holds the lock: {h.get('command', '?')} by {h.get('owner', '?')} "
            f"since {h.get('since', '?')}. Wait for it, or retry with --lock-wait SECONDS "
            f"(a lock whose holder lost its connection lapses after {LEASE} s).",
        )
    held.keep_alive(LEASE / 4)
    return held


def for_each_host(names: Iterable[str], work: Callable[[str], None], parallel: int) -> None:
    """`work(name)` for every host, up to `parallel` at once, each in a thread of its own."""
    hosts = list(names)
    if not hosts:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts)))) as pool:
        list(pool.map(work, hosts))
