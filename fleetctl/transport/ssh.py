"""SSH through Fabric: ~/.ssh/config, keys and agent as the user's own ssh would use them,
with strict host key checking on top, and one connection per host reused for everything."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import select
import shlex
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import paramiko
from fabric import Config, Connection

from fleetctl.transport import hostkeys
from fleetctl.transport.base import (
    Completed,
    Held,
    HostKeyError,
    LineHandler,
    Transport,
    TransportError,
    chunks,
    split_lines,
)

CONNECT_TIMEOUT = 10
KEEPALIVE = 5  # seconds between SSH keepalives
DEAD_PEER_MS = 20_000  # unacknowledged data for this long: the host is gone
# paramiko logs refused forwards and the like on the root logger's last-resort handler;
# fleetctl reports what matters itself.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


class SshHeld(Held):
    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self._sending = threading.Lock()
        self._out = channel.makefile("rb")

    def readline(self) -> bytes:
        line: bytes = self._out.readline()
        return line

    def _send(self, data: bytes) -> None:
        self._channel.sendall(data)

    def _close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._channel.shutdown_write()
        self._channel.close()


_OVERRIDES = {"run": {"in_stream": False}, "load_ssh_configs": True}


@functools.cache
def _parsed_ssh_config(runtime_path: Path | None) -> paramiko.SSHConfig:
    """The ssh_config files as Fabric reads them: `runtime_path` alone if given, else the
    user's ~/.ssh/config and /etc/ssh/ssh_config; each host looked up once per run."""
    path = str(runtime_path) if runtime_path else None
    base: paramiko.SSHConfig = Config(overrides=_OVERRIDES, runtime_ssh_path=path).base_ssh_config
    return _answering_once_per_host(base)


def _answering_once_per_host(config: paramiko.SSHConfig) -> paramiko.SSHConfig:
    """Memoise `config.lookup`, which Fabric and the host key check both call for every
    host. A lookup walks every block of the file twice and asks the password database
    once per block: 0.65 ms of CPU each with a 21-host file, twice per host. Callers get
    copies, as Fabric keeps what it is given."""
    lookup = config.lookup
    answers: dict[str, paramiko.SSHConfigDict] = {}
    guard = threading.Lock()

    def lookup_once(hostname: str) -> paramiko.SSHConfigDict:
        with guard:
            if hostname not in answers:
                answers[hostname] = lookup(hostname)
            return copy.deepcopy(answers[hostname])

    config.lookup = lookup_once
    return config


def accepted_host_keys(
    address: str,
    port: int,
    *,
    pinned_key: str | None,
    ssh_config: Path | None,
    known_hosts: Sequence[str],
) -> tuple[list[paramiko.PKey], str]:
    """The keys a connection to the host will accept, and where they come from: the key
    pinned in servers.yaml, else the known_hosts files ssh would read for it."""
    name = hostkeys.known_hosts_name(address, port)
    if pinned_key:
        keys = hostkeys.pinned_keys(name, pinned_key)
        source = "servers.yaml host_key"
    else:
        configured = _parsed_ssh_config(ssh_config).lookup(address).get("userknownhostsfile")
        paths = list(known_hosts) or (
            configured.split() if configured else list(hostkeys.DEFAULT_KNOWN_HOSTS)
        )
        keys = hostkeys.load_known_hosts(tuple(paths))
        source = "known_hosts (" + ", ".join(paths) + ")"
    return list((keys.lookup(name) or {}).values()), source


def key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


class _QuickAckSocket:
    """A TCP socket that acknowledges what it receives at once.

    sshd leaves Nagle's algorithm on for non-interactive sessions, so a small packet it
    sends while an earlier one is unacknowledged waits for our ACK, and Linux delays that
    ACK by up to 40 ms. Right after authentication that happens every time (sshd's
    hostkeys-00 announcement, then the answer to our first channel), which made each
    connection's first command take 40 ms longer than all the rest of its round trips.
    TCP_QUICKACK is not sticky, so it is set again before every read."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int) -> bytes:
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def _dial(address: str, port: int, timeout: float) -> socket.socket:
    """The TCP connection for one host, tuned: no Nagle delay on our side, and a host that
    vanishes fails its writes after DEAD_PEER_MS instead of TCP's 15 minutes of retries."""
    sock = socket.create_connection((address, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_MS)
    return sock


class SshTransport(Transport):
    def __init__(
        self,
        name: str,
        address: str,
        *,
        user: str,
        port: int,
        pinned_key: str | None = None,
        ssh_config: Path | None = None,
        known_hosts: Sequence[str] = (),
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.name = name
        # One Config per host: Fabric writes connection settings into it. The ssh_config
        # files behind it are parsed once per run (1.5 ms a host with a 21-host file).
        config = Config(overrides=_OVERRIDES, ssh_config=_parsed_ssh_config(ssh_config))
        self._conn = Connection(
            address, user=user, port=port, config=config, connect_timeout=int(connect_timeout)
        )
        self._lookup_name = hostkeys.known_hosts_name(address, port)
        client: paramiko.SSHClient = self._conn.client
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        keys, self.key_source = accepted_host_keys(
            address, port, pinned_key=pinned_key, ssh_config=ssh_config, known_hosts=known_hosts
        )
        host_keys = client.get_host_keys()
        for key in keys:
            host_keys.add(self._lookup_name, key.get_name(), key)
        self._open(connect_timeout)
        # Keepalives make traffic, so a vanished host fails (TCP_USER_TIMEOUT) even when
        # fleetctl is only waiting for it.
        self._paramiko().set_keepalive(KEEPALIVE)

    def _open(self, timeout: float) -> None:
        sock: socket.socket | None = None
        try:
            if self._conn.gateway is None:  # through ProxyJump/ProxyCommand, Fabric dials
                sock = _dial(self._conn.host, self._conn.port, timeout)
                self._conn.connect_kwargs["sock"] = _QuickAckSocket(sock)
            try:
                self._conn.open()
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
        except paramiko.BadHostKeyException as e:
            raise HostKeyError(
                self.name,
                f"host key mismatch: expected {hostkeys.fingerprint(e.expected_key)} "
                f"({self.key_source}), the host presented {hostkeys.fingerprint(e.key)}. "
                "If the host was reinstalled, update its key; otherwise do not connect.",
            ) from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise HostKeyError(
                    self.name,
                    f"unknown host key: {self._lookup_name} is not in {self.key_source}. "
                    f"Check the key and add it (ssh-keyscan -p PORT ADDRESS >> known_hosts) "
                    "or pin it with host_key: in servers.yaml.",
                ) from None
            raise TransportError(self.name, f"SSH failed: {e}") from None
        except (OSError, EOFError) as e:
            reason = (
                e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            )
            raise TransportError(self.name, f"unreachable: {reason}") from None

    @property
    def presented_key_line(self) -> str:
        return key_line(self._paramiko().get_remote_server_key())

    def _paramiko(self) -> paramiko.Transport:
        transport: paramiko.Transport | None = self._conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(self.name, "the SSH connection was lost")
        return transport

    def _session(self, argv: Sequence[str]) -> paramiko.Channel:
        try:
            channel: paramiko.Channel = self._paramiko().open_session(timeout=CONNECT_TIMEOUT)
            channel.exec_command(shlex.join(argv))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TransportError(self.name, f"the SSH connection failed: {e}") from None
        return channel

    def run(
        self,
        argv: Sequence[str],
        stdin: bytes = b"",
        *,
        timeout: float | None = None,
        on_line: LineHandler | None = None,
    ) -> Completed:
        channel = self._session(argv)
        channel.settimeout(timeout)
        out, err, pending = bytearray(), bytearray(), bytearray()
        try:
            for piece in chunks(stdin):
                channel.sendall(piece)
            channel.shutdown_write()
            while True:
                data = channel.recv(1 << 16)
                if not data:
                    break
                out += data
                if on_line is not None:
                    pending += data
                    split_lines(pending, on_line)
            while chunk := channel.recv_stderr(1 << 16):
                err += chunk
            code = channel.recv_exit_status()
        except TimeoutError:
            raise TransportError(self.name, f"{argv[0]} timed out after {timeout}s") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TransportError(self.name, f"the SSH connection failed: {e}") from None
        finally:
            channel.close()
        if code == -1:
            raise TransportError(self.name, "the SSH connection closed before the command ended")
        return Completed(code, bytes(out), bytes(err))

    def put(self, local: Path, remote: str) -> None:
        try:
            sftp = self._conn.client.open_sftp()
            try:
                parent = remote.rsplit("/", 1)[0]
                self.run(["mkdir", "-p", "-m", "0700", parent])
                sftp.put(str(local), remote)
            finally:
                sftp.close()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TransportError(self.name, f"copying {local.name} failed: {e}") from None

    def hold(self, argv: Sequence[str]) -> Held:
        return SshHeld(self._session(argv))

    @contextlib.contextmanager
    def forward(self, host: str, port: int) -> Iterator[int]:
        """Like `ssh -L`: a local listener whose connections become direct-tcpip channels."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        stop = threading.Event()

        def pump(local: socket.socket) -> None:
            try:
                remote = self._paramiko().open_channel(
                    "direct-tcpip", (host, port), local.getsockname(), timeout=CONNECT_TIMEOUT
                )
            except (paramiko.SSHException, OSError, EOFError, TransportError):
                local.close()
                return
            with local, remote:
                while not stop.is_set():
                    ready, _, _ = select.select([local, remote], [], [], 0.2)
                    if local in ready:
                        data = local.recv(1 << 16)
                        if not data:
                            break
                        remote.sendall(data)
                    if remote in ready:
                        data = remote.recv(1 << 16)
                        if not data:
                            break
                        local.sendall(data)

        def accept() -> None:
            while not stop.is_set():
                try:
                    local, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=pump, args=(local,), daemon=True).start()

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        try:
            yield int(listener.getsockname()[1])
        finally:
            stop.set()
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once
            listener.close()
            acceptor.join(timeout=2)

    def close(self) -> None:
        self._conn.close()
