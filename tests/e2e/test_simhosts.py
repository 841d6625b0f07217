"""Self-test of the simulated-hosts harness (tests/support/simhosts.py)."""

from __future__ import annotations

import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.support.simhosts import SimHost, SimNet, skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BROKER, W1, W2 = "broker-host", "worker-1", "worker-2"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimNet]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with SimNet(tmp_path_factory.mktemp("simnet"), [BROKER, W1, W2]) as n:
        yield n


def sh(conn: Any, command: str) -> Any:
    """Run over an open Fabric connection; never raise on a non-zero exit."""
    return conn.run(command, hide=True, warn=True)


def wait_until(check: Callable[[], bool], timeout: float = 10, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def unit(name: str, body: str) -> str:
    """Shell to install /etc/systemd/system/<name>."""
    text = textwrap.dedent(body).strip() + "\n"
    return f"cat > /etc/systemd/system/{name} <<'EOF'\n{text}EOF\n"


def test_every_host_answers_over_ssh(net: SimNet) -> None:
    for name, host in net.hosts.items():
        conn = net.connect(name)
        try:
            assert sh(conn, "hostname").stdout.strip() == name
            assert sh(conn, "id -un").stdout.strip() == "root"
        finally:
            conn.close()
        assert host.run(["hostname"]).stdout.decode().strip() == name
    # OpenSSH through the generated ssh_config, by name and by address
    broker = net.hosts[BROKER]
    for target in (BROKER, broker.address):
        out = subprocess.run(net.ssh_argv(target, ["hostname"]), capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode().strip() == BROKER


def test_an_unknown_host_key_is_refused(net: SimNet) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())  # and no known hosts
    with net.in_lan(), pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(
            net.hosts[W1].address,
            username="root",
            key_filename=str(net.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
        )
    client.close()


def same_as_the_replacement(conn: Any, units: str, *, fast_path: bool = True) -> None:
    """The harness's fast `is-active` (shell, no Python) answers what
    docker-systemctl-replacement answers; `fast_path`: it answers these units itself."""
    fast = sh(conn, f"systemctl is-active {units}")
    full = sh(conn, f"SIMHOSTS_FULL_SYSTEMCTL=1 systemctl is-active {units}")
    assert (fast.stdout, fast.exited) == (full.stdout, full.exited)
    only = sh(conn, f"SIMHOSTS_FAST_ONLY=1 systemctl is-active {units}")
    assert (only.exited != 98) == fast_path, only.stdout


def test_systemd_unit_lifecycle(net: SimNet) -> None:
    host = net.hosts[W1]
    conn = net.connect(W1)
    try:
        assert sh(conn, "useradd --system -p '*' -s /usr/sbin/nologin svc1").ok
        install = unit(
            "x.service",
            """
            [Unit]
            Description=x
            [Service]
            User=svc1
            ExecStart=/usr/bin/python3 -c "import signal, time; signal.signal(signal.SIGHUP, lambda *a: print('HUP', flush=True)); [time.sleep(1) for _ in iter(int, 1)]"
            ExecReload=/bin/kill -HUP $MAINPID
            [Install]
            WantedBy=multi-user.target
            """,  # noqa: E501
        )
        assert sh(conn, install).ok
        assert host.file("/etc/systemd/system/x.service").is_file()  # landed in the upper
        assert sh(conn, "systemctl daemon-reload").ok
        assert sh(conn, "systemctl enable --now x.service").ok
        assert host.file("/etc/systemd/system/multi-user.target.wants/x.service").is_symlink()
        assert sh(conn, "systemctl is-active x.service").stdout.strip() == "active"
        assert sh(conn, "systemctl is-enabled x.service").stdout.strip() == "enabled"
        same_as_the_replacement(conn, "x.service")

        # several units in one call
        r = sh(conn, "systemctl is-active x.service nope.service")
        assert (r.stdout.split(), r.exited) == (["active", "inactive"], 3)
        r = sh(conn, "systemctl show -p ActiveState -p UnitFileState x.service nope.service")
        blocks = [b.split() for b in r.stdout.strip().split("\n\n")]
        assert blocks == [
            ["ActiveState=active", "UnitFileState=enabled"],
            ["ActiveState=inactive", "UnitFileState=static"],  # systemd itself: not-found, ""
        ]

        def main_pid() -> int:
            return int(sh(conn, "systemctl show -p MainPID x.service").stdout.split("=")[1])

        pid = main_pid()
        assert sh(conn, f"ps -o user= -p {pid}").stdout.strip() == "svc1"
        assert sh(conn, "systemctl restart x.service").ok
        assert main_pid() not in (0, pid)
        assert sh(conn, "systemctl reload x.service").ok
        assert wait_until(lambda: "HUP" in sh(conn, "journalctl -u x.service -n 5").stdout)
        assert sh(conn, "systemctl is-active x.service").stdout.strip() == "active"

        assert sh(conn, "systemctl disable --now x.service").ok
        assert sh(conn, "systemctl is-active x.service").stdout.strip() == "inactive"
        same_as_the_replacement(conn, "x.service")
        same_as_the_replacement(conn, "x.service nope.service", fast_path=False)
        assert sh(conn, "systemctl is-enabled x.service").stdout.strip() == "disabled"
        assert "svc1" not in sh(conn, "ps -eo user=").stdout.split()
    finally:
        conn.close()


def test_a_service_outlives_its_ssh_session_and_a_reboot(net: SimNet) -> None:
    host = net.hosts[W2]
    conn = net.connect(W2)
    try:
        install = unit(
            "long.service",
            """
            [Service]
            ExecStart=/bin/sleep 1000
            [Install]
            WantedBy=multi-user.target
            """,
        )
        assert sh(conn, install + "systemctl enable --now long.service").ok
        pid = sh(conn, "systemctl show -p MainPID long.service").stdout.split("=")[1].strip()
    finally:
        conn.close()
    time.sleep(0.3)
    conn = net.connect(W2)
    try:
        assert sh(conn, "systemctl is-active long.service").stdout.strip() == "active"
        assert sh(conn, f"ps -o ppid=,stat=,cmd= -p {pid}").stdout.split() == [
            "1",  # reparented to the host's PID 1 (which reaps it when it dies)
            "Ss",
            "/bin/sleep",
            "1000",
        ]
        sh(conn, f"kill {pid}")
        assert wait_until(lambda: sh(conn, f"ps -o stat= -p {pid}").stdout.strip() == "")
    finally:
        conn.close()

    # reboot: enabled units start again, like systemd at boot; files survive, /run does not
    host.reboot()
    assert wait_until(lambda: _is_active(host, "long.service"), timeout=5)
    assert host.file("/etc/systemd/system/long.service").is_file()


def _is_active(host: SimHost, unit_name: str) -> bool:
    return host.run(["systemctl", "is-active", unit_name]).stdout.strip() == b"active"


def test_python_venv_inside_a_host(net: SimNet) -> None:
    host = net.hosts[W2]
    r = host.run(["python3", "-m", "venv", "--without-pip", "/opt/venv"])
    assert r.returncode == 0, r.stderr
    r = host.run(["/opt/venv/bin/python", "-c", "import sys; print(sys.prefix)"])
    assert r.stdout.decode().strip() == "/opt/venv"
    assert host.file("/opt/venv/bin/python").is_symlink()


def _can_connect(net: SimNet, address: str, timeout: float) -> bool:
    with net.in_lan():
        try:
            socket.create_connection((address, 22), timeout=timeout).close()
        except OSError:
            return False
        return True


def test_set_reachable_cuts_and_restores_the_link(net: SimNet) -> None:
    host = net.hosts[W1]
    assert _can_connect(net, host.address, 2)
    host.set_reachable(False)
    try:
        started = time.monotonic()
        assert not _can_connect(net, host.address, 0.5)
        assert time.monotonic() - started < 2
        with pytest.raises((OSError, paramiko.SSHException)):
            net.connect(W1, timeout=0.5).close()
    finally:
        host.set_reachable(True)
    assert wait_until(lambda: _can_connect(net, host.address, 1), timeout=5)


def test_autossh_port_forwarding_between_hosts(net: SimNet, tmp_path: Path) -> None:
    broker, worker = net.hosts[BROKER], net.hosts[W2]
    # the worker's tunnel key, authorised for a system user on the broker
    r = worker.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/.ssh/id_tunnel"])
    assert r.returncode == 0, r.stderr
    pub = worker.file("/root/.ssh/id_tunnel.pub").read_text().strip()
    setup_broker = (
        "useradd --system -p '*' -s /usr/sbin/nologin --create-home --home-dir /var/lib/tun tun"
        " && install -d -m 700 -o tun -g tun /var/lib/tun/.ssh"
        f" && echo '{pub}' > /var/lib/tun/.ssh/authorized_keys"
        " && chown tun:tun /var/lib/tun/.ssh/authorized_keys"
        " && chmod 600 /var/lib/tun/.ssh/authorized_keys\n"
        + unit(
            "web.service",
            """
            [Service]
            WorkingDirectory=/var/lib/tun
            ExecStart=/usr/bin/python3 -m http.server 8000 --bind 127.0.0.1
            """,
        )
        + "systemctl start web.service"
    )
    r = broker.run(["sh", "-ec", setup_broker])
    assert r.returncode == 0, r.stderr
    known = f"{broker.name},{broker.address} {broker.host_key_line}\n"
    setup_worker = unit(
        "tunnel.service",
        """
        [Service]
        Environment=AUTOSSH_GATETIME=0 AUTOSSH_POLL=5
        ExecStart=/usr/bin/autossh -M 0 -N -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ExitOnForwardFailure=yes -o BatchMode=yes -i /root/.ssh/id_tunnel -L 127.0.0.1:18000:127.0.0.1:8000 tun@broker-host
        [Install]
        WantedBy=multi-user.target
        """,  # noqa: E501
    ) + (f"echo '{known.strip()}' > /root/.ssh/known_hosts\nsystemctl enable --now tunnel.service")
    r = worker.run(["sh", "-ec", setup_worker])
    assert r.returncode == 0, r.stderr

    fetch = [
        "python3",
        "-c",
        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:18000/', timeout=2).status)",
    ]
    assert wait_until(lambda: worker.run(fetch).stdout.strip() == b"200", timeout=10), (
        worker.run(["cat", "/var/log/journal/tunnel.service.log"]).stdout.decode()
        + broker.log()[-1000:]
    )
    assert "Accepted publickey for tun from " + worker.address in broker.log()
