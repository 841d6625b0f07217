"""What a stolen tunnel key can do on the broker: open the NATS port, and nothing else.

A real fleet on simulated hosts (fleetctl apply: real sshd, nats-server, autossh), then an
attacker with a worker host's tunnel key (the local copy fleetctl generated) tries every
other kind of forward, a shell and a PTY against the broker's real sshd. The listeners the
attacker aims at always send a line, so a refused forward is one that yields nothing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl import layout
from fleetctl.identity.tunnellogin import SSHD_EFFECTIVE
from fleetctl.reconcile import agent_client
from fleetctl.reconcile.resources.base import Staged
from fleetctl.reconcile.resources.files import SshdConfigSpec
from tests.e2e.fleet_env import (
    BROKER,
    NODES,
    FleetEnv,
    install_standins,
    prepare_wheelhouse,
    worker,
)
from tests.support import unit_filter
from tests.support.simhosts import SimNet, skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

NODE = NODES[0]
NATS_PORT = 4222
PROBE_PORT = 5555  # another service on the broker's loopback
PROBE_SOCKET = "/run/probe.sock"  # a unix socket on the broker
PROBE = """\
import os, socket, sys, threading
def serve(s):
    while True:
        c, _ = s.accept(); c.sendall(b"PROBE\\n"); c.close()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(sys.argv[1]))); t.listen()
u = socket.socket(socket.AF_UNIX); u.bind(sys.argv[2]); os.chmod(sys.argv[2], 0o777); u.listen()
threading.Thread(target=serve, args=(u,), daemon=True).start()
serve(t)
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetEnv]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    prepare_wheelhouse()
    base = tmp_path_factory.mktemp("tunnelkey")
    with SimNet(base / "net", [BROKER, NODE]) as net:
        install_standins(net, (NODE,))
        env = FleetEnv(net, base, workers=[worker("cmd-a", NODE)], nodes=(NODE,))
        env.write()
        done = env.fleetctl("apply", "--all", "--issue-creds", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        broker = net.hosts[BROKER]
        broker.write_file("/root/probe.py", PROBE)
        probe = f"python3 /root/probe.py {PROBE_PORT} {PROBE_SOCKET}"
        broker.run(["sh", "-c", f"setsid {probe} </dev/null >/dev/null 2>&1 &"], check=True)
        yield env


def tunnel_key(env: FleetEnv) -> Path:
    return env.dir / "nsc" / "keys" / "fleetctl-tunnel" / NODE


def attacker_ssh(
    env: FleetEnv,
    *args: str,
    command: tuple[str, ...] = (),
    seconds: float = 8,
    ssh: tuple[str, ...] = ("ssh",),
) -> list[str]:
    """ssh as the tunnel user with the stolen key, from the LAN (anywhere on the network)."""
    broker = env.net.hosts[BROKER]
    return env.net.lan_argv(
        ["timeout", str(seconds), *ssh, "-i", str(tunnel_key(env)), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes",
         "-o", "LogLevel=ERROR", *args, f"{layout.TUNNEL_USER}@{broker.address}", *command]
    )  # fmt: skip


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def read_through_local_forward(
    env: FleetEnv,
    target: str,
    local_port: int,
    then_send: bytes = b"",
    ssh_program: tuple[str, ...] = ("ssh",),
) -> bytes:
    """Open `ssh -L local_port:target`, connect to it, and return what came back (after
    sending `then_send`, if given, what came back to that too)."""
    ssh = subprocess.Popen(
        attacker_ssh(env, "-N", "-L", f"127.0.0.1:{local_port}:{target}", ssh=ssh_program),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 8
        while True:
            with env.net.in_lan():
                try:
                    conn = socket.create_connection(("127.0.0.1", local_port), timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline or ssh.poll() is not None:
                        raise
            time.sleep(0.1)
        with conn:
            conn.settimeout(3)
            try:
                got = conn.recv(4096)
                if then_send and got:
                    conn.sendall(then_send)
                    got += b"|" + conn.recv(4096)
                return got
            except TimeoutError:
                return b""
    finally:
        ssh.terminate()
        ssh.wait(10)


def broker_listens(env: FleetEnv, port: int) -> bool:
    return f"127.0.0.1:{port} " in env.sh(BROKER, "ss -Hltn")


def test_the_tunnel_unit_connects_and_a_task_runs(fleet: FleetEnv) -> None:
    assert fleet.active(NODE, layout.TUNNEL_UNIT)
    results = fleet.tasks_round_trip(["cmd-a"])
    assert results["cmd-a"]["status"] == "completed", results


def test_the_stolen_key_opens_the_nats_port_but_no_nats_identity(fleet: FleetEnv) -> None:
    got = read_through_local_forward(
        fleet, f"127.0.0.1:{NATS_PORT}", 14222, then_send=b'CONNECT {"verbose":false}\r\nPING\r\n'
    )
    assert got.startswith(b"INFO ") and b'"auth_required":true' in got, got
    assert b"-ERR 'Authorization Violation'" in got.split(b"|", 1)[1], got


def test_autossh_forwards_under_the_tunnel_units_sandbox(fleet: FleetEnv, tmp_path: Path) -> None:
    """The tunnel unit as apply installed it, its seccomp part applied by hand (system-call
    filter, no namespaces, W^X: tests/support/unit_filter.py), around autossh and ssh."""
    if (reason := unit_filter.skip_reason()) is not None:
        pytest.skip(reason)
    unit = fleet.net.hosts[NODE].file(layout.unit_path(layout.TUNNEL_UNIT)).read_text()
    autossh = unit_filter.wrap(tmp_path, unit, "/usr/bin/autossh")
    program = ("env", "AUTOSSH_GATETIME=0", str(autossh), "-M", "0")
    got = read_through_local_forward(fleet, f"127.0.0.1:{NATS_PORT}", 14333, ssh_program=program)
    assert got.startswith(b"INFO "), got


def test_local_forwards_to_anything_else_are_refused(fleet: FleetEnv) -> None:
    # the targets answer when asked directly on the broker
    asked = (
        "python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', 5555)).recv(9))\""
    )
    assert "PROBE" in fleet.sh(BROKER, asked)
    assert read_through_local_forward(fleet, f"127.0.0.1:{PROBE_PORT}", 15555) == b""
    assert read_through_local_forward(fleet, "127.0.0.1:22", 15556) == b""
    assert read_through_local_forward(fleet, PROBE_SOCKET, 15557) == b""  # a unix socket


def test_remote_forwards_are_refused_even_on_the_free_nats_port(fleet: FleetEnv) -> None:
    # The attack: while nats-server is down, bind its port on the broker.
    assert fleet.sh(BROKER, "systemctl stop nats-server.service; echo $?").strip() == "0"
    try:
        assert not broker_listens(fleet, NATS_PORT)
        tcp = run(attacker_ssh(fleet, "-N", "-R", f"127.0.0.1:{NATS_PORT}:127.0.0.1:22"))
        assert tcp.returncode == 255, tcp
        assert "remote port forwarding failed" in tcp.stderr
        unix = run(attacker_ssh(fleet, "-N", "-R", "/tmp/fleet-evil.sock:127.0.0.1:22"))
        assert unix.returncode == 255, unix
        assert "remote port forwarding failed" in unix.stderr
        assert not fleet.exists(BROKER, "/tmp/fleet-evil.sock")
        assert not broker_listens(fleet, NATS_PORT)
    finally:
        fleet.sh(BROKER, "systemctl start nats-server.service")
    # and the genuine tunnel gets the broker back
    results = fleet.tasks_round_trip(["cmd-a"])
    assert results["cmd-a"]["status"] == "completed", results


def test_no_shell_no_pty_no_subsystem_no_tun_device(fleet: FleetEnv) -> None:
    shell = run(attacker_ssh(fleet, command=("id",)))
    assert shell.returncode != 0 and "uid=" not in shell.stdout, shell
    pty = run(attacker_ssh(fleet, "-tt", command=("id",)))
    assert "uid=" not in pty.stdout and "PTY allocation request failed" in pty.stderr, pty
    sftp = run(attacker_ssh(fleet, "-s", command=("sftp",), seconds=4))
    assert sftp.returncode != 0 and "SFTP" not in sftp.stdout, sftp
    tun = run(attacker_ssh(fleet, "-N", "-w", "any", seconds=4))
    assert "Tunnel forwarding failed" in tun.stderr, tun


def test_the_broker_sshd_applies_the_tunnel_drop_in(fleet: FleetEnv) -> None:
    effective = fleet.sh(BROKER, "sshd -T -C user=fleet-tunnel,host=x,addr=127.0.0.1")
    for line in ("allowtcpforwarding local", "allowstreamlocalforwarding no", "permitlisten none"):
        assert line in effective.splitlines()
    # root's logins (fleetctl's own) keep their forwarding
    root = fleet.sh(BROKER, "sshd -T -C user=root,host=x,addr=127.0.0.1")
    assert "allowtcpforwarding yes" in root.splitlines()


def agent_writes_drop_in(fleet: FleetEnv, content: bytes) -> tuple[int, str]:
    """The host program's step for the sshd drop-in, run on the broker as apply runs it."""
    spec = SshdConfigSpec(
        layout.SSHD_TUNNEL_CONF, content, user=layout.TUNNEL_USER, expect=SSHD_EFFECTIVE
    )
    [step] = [s.op for s in spec.steps(Staged())]
    program = agent_client.agent_program({"op": "apply", "steps": [step]})
    done = fleet.net.hosts[BROKER].run(["python3", "-I", "-S", "-"], input=program)
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return done.returncode, str(events[-1].get("error", ""))


def test_a_drop_in_sshd_refuses_is_put_back_and_sshd_keeps_working(fleet: FleetEnv) -> None:
    good = fleet.net.hosts[BROKER].file(layout.SSHD_TUNNEL_CONF).read_bytes()
    code, error = agent_writes_drop_in(fleet, b"Match User fleet-tunnel\n\tNoSuchOption yes\n")
    assert code == 1 and "/usr/sbin/sshd -t exited 255" in error, error
    assert fleet.net.hosts[BROKER].file(layout.SSHD_TUNNEL_CONF).read_bytes() == good
    fleet.net.connect(BROKER).close()  # root still gets in
    test_remote_forwards_are_refused_even_on_the_free_nats_port(fleet)


def test_a_drop_in_sshd_would_not_read_is_refused_with_the_fix(fleet: FleetEnv) -> None:
    broker = fleet.net.hosts[BROKER]
    good = broker.file(layout.SSHD_TUNNEL_CONF).read_bytes()
    config = broker.run(["cat", "/etc/ssh/sshd_config"], check=True).stdout.decode()
    assert "\nInclude /etc/ssh/sshd_config.d/*.conf\n" in config
    broker.write_file("/etc/ssh/sshd_config", config.replace("Include ", "#Include "))
    try:
        code, error = agent_writes_drop_in(fleet, b"# a changed comment\n" + good)
    finally:
        broker.write_file("/etc/ssh/sshd_config", config)
    assert code == 1
    assert "add `Include /etc/ssh/sshd_config.d/*.conf` at the top" in error, error
    assert broker.file(layout.SSHD_TUNNEL_CONF).read_bytes() == good


def _socks4(env: FleetEnv, local_port: int, target_port: int) -> bytes:
    """Through `ssh -D local_port`: a SOCKS4 CONNECT to the broker's 127.0.0.1:target_port,
    and what came back after the reply (the probe's line, if the forward was opened)."""
    ssh = subprocess.Popen(
        attacker_ssh(env, "-N", "-D", f"127.0.0.1:{local_port}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 8
        while True:
            with env.net.in_lan():
                try:
                    conn = socket.create_connection(("127.0.0.1", local_port), timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline or ssh.poll() is not None:
                        raise
            time.sleep(0.1)
        with conn:
            conn.settimeout(3)
            conn.sendall(b"\x04\x01" + target_port.to_bytes(2, "big") + bytes([127, 0, 0, 1, 0]))
            got = b""
            try:
                while chunk := conn.recv(4096):
                    got += chunk
                    if b"PROBE" in got or b"INFO" in got:
                        break
            except (TimeoutError, ConnectionResetError):
                pass
            return got
    finally:
        ssh.terminate()
        ssh.wait(10)


def test_other_kinds_and_spellings_of_forwards_are_refused(fleet: FleetEnv) -> None:
    """The replay of the stolen key (docs/security.md, "Attack replay"): a stdio forward
    (`ssh -W`), a SOCKS forward (`ssh -D`), the loopback spelled otherwise, and a forward on
    to a worker host's sshd over the LAN (a pivot) reach nothing; SOCKS to the NATS port is
    the one forward the key has anyway."""
    node = fleet.net.hosts[NODE].address
    for target in (f"127.0.0.1:{PROBE_PORT}", "127.0.0.1:22", f"{node}:22"):
        done = subprocess.run(
            attacker_ssh(fleet, "-W", target, seconds=6),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        assert b"PROBE" not in done.stdout and b"SSH-" not in done.stdout, (target, done)
        assert done.returncode == 255 and b"stdio forwarding failed" in done.stderr, done
    spellings = (f"localhost:{PROBE_PORT}", f"127.1:{PROBE_PORT}", f"0x7f000001:{PROBE_PORT}")
    for i, target in enumerate((*spellings, f"{node}:22", f"localhost:{NATS_PORT}")):
        assert read_through_local_forward(fleet, target, 15560 + i) == b"", target
    assert b"PROBE" not in _socks4(fleet, 15570, PROBE_PORT)
    assert b"INFO " in _socks4(fleet, 15571, NATS_PORT)  # the key's one forward, as -L
