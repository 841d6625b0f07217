"""The host agent's apply steps (fleetctl/hostside/steps.py), loaded in this process the
way a host's python3 runs them (tests/support/hostagent.py). The commands a step runs are
recorded instead of run and asserted as argv; files are written for real under a
temporary directory, owned by whoever runs the tests, so no root is needed.

What this leaves to others: the steps as a program on a real interpreter
(tests/integration/test_host_agent.py), LLM CLI bundles (test_install_tree.py), the
poller's wheelhouse with a real pip (test_wheelhouse_install.py), real sshd and systemd
(tests/e2e)."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostagent import GROUP, OWNER, Agent, fake_agent, file_step

TMP_MARK = ".fleetctl-tmp-"


def as_tester(agent: Agent) -> list[tuple[str, str, str]]:
    """The agent's write_file, writing as the tester whatever owner a step asks for; the
    owners asked for, by path."""
    real = agent.ns["write_file"]
    asked: list[tuple[str, str, str]] = []

    def write_file(
        path: str, data: bytes, owner: str = "root", group: str = "root", mode: int = 0o644
    ) -> None:
        asked.append((path, owner, group))
        real(path, data, OWNER, GROUP, mode)

    agent.ns["write_file"] = write_file
    return asked


def events(agent: Agent) -> list[tuple[Any, ...]]:
    return [(e["i"], e["ok"], e.get("error")) for e in agent.events]


def test_apply_reports_each_step_and_stops_at_the_first_that_fails(tmp_path: Path) -> None:
    agent = fake_agent()
    target = tmp_path / "etc" / "a.conf"
    damaged = file_step(tmp_path / "b.conf", b"b") | {"sha256": "0" * 64}
    code = agent.apply(
        file_step(target, b"one\n"),
        {"op": "systemctl", "args": ["daemon-reload"]},
        damaged,
        {
            "op": "dir",
            "path": str(tmp_path / "never"),
            "owner": OWNER,
            "group": GROUP,
            "mode": 0o755,
        },
    )
    assert code == 1
    assert events(agent) == [
        (0, True, None),
        (1, True, None),
        (2, False, f"content of {tmp_path / 'b.conf'} arrived damaged"),
    ]
    assert all(isinstance(e["seconds"], float) for e in agent.events[:2])
    assert agent.spawn.calls == [["systemctl", "daemon-reload"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc"]  # b.conf and never: not made


def test_an_os_error_fails_the_step_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    agent = fake_agent()
    assert agent.apply({"op": "remove_file", "path": str(tmp_path / "plain" / "f")}) == 1
    assert events(agent) == [(0, False, f"{tmp_path / 'plain' / 'f'}: Not a directory")]


def test_a_file_is_written_whole_with_its_mode_and_stale_temporaries_go(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "fleet" / "a.env"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old\n")
    stale = target.parent / f".a.env{TMP_MARK}x1"  # left by an apply killed mid-write
    stale.write_bytes(b"half")
    other = target.parent / f".b.env{TMP_MARK}x2"  # another file's: not this step's to remove
    other.write_bytes(b"half")
    agent = fake_agent()
    assert agent.apply(file_step(target, b"new\n", 0o600)) == 0
    assert target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == [other.name, "a.env"]


def test_damaged_content_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "a.conf"
    target.write_bytes(b"old\n")
    agent = fake_agent()
    step = file_step(target, b"new\n") | {"content": base64.b64encode(b"nex\n").decode()}
    assert agent.apply(step) == 1
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.conf"]


def test_a_file_for_an_owner_the_host_lacks_is_refused_by_name(tmp_path: Path) -> None:
    agent = fake_agent()
    assert agent.apply(file_step(tmp_path / "a", b"x", owner="fleet-nobody-here")) == 1
    why = "no such user or group: getpwnam(): name not found: 'fleet-nobody-here'"
    assert events(agent) == [(0, False, why)]
    assert not (tmp_path / "a").exists()


def test_a_dir_is_made_or_corrected_to_its_mode(tmp_path: Path) -> None:
    made, loose = tmp_path / "new" / "deep", tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    agent = fake_agent()
    dirs = [
        {"op": "dir", "path": str(p), "owner": OWNER, "group": GROUP, "mode": 0o750}
        for p in (made, loose)
    ]
    assert agent.apply(*dirs) == 0
    assert [stat.S_IMODE(p.stat().st_mode) for p in (made, loose)] == [0o750, 0o750]


def test_a_missing_user_is_added_as_a_system_user_that_cannot_log_in() -> None:
    agent = fake_agent()
    assert agent.apply({"op": "user", "name": "fleet-nobody-here", "home": "/var/lib/fleet/x"}) == 0
    assert agent.spawn.calls == [
        [
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/fleet/x",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--password",
            "*",
            "fleet-nobody-here",
        ]
    ]


def test_a_user_with_another_home_is_moved_and_one_as_wanted_is_left_alone() -> None:
    home = os.path.expanduser(f"~{OWNER}")
    agent = fake_agent()
    assert (
        agent.apply(
            {"op": "user", "name": OWNER, "home": home},
            {"op": "user", "name": OWNER, "home": "/var/lib/fleet/elsewhere"},
        )
        == 0
    )
    assert agent.spawn.calls == [["usermod", "--home", "/var/lib/fleet/elsewhere", OWNER]]


def test_a_user_is_removed_only_when_there() -> None:
    agent = fake_agent()
    assert (
        agent.apply(
            {"op": "remove_user", "name": "fleet-nobody-here"},
            {"op": "remove_user", "name": OWNER},
        )
        == 0
    )
    assert agent.spawn.calls == [["userdel", OWNER]]


def test_systemctl_runs_with_the_steps_arguments_and_timeout() -> None:
    agent = fake_agent()
    assert (
        agent.apply(
            {"op": "systemctl", "args": ["enable", "--now", "a-poller.service"]},
            {"op": "systemctl", "args": ["restart", "nats-server.service"], "timeout": 30},
        )
        == 0
    )
    assert agent.spawn.calls == [
        ["systemctl", "enable", "--now", "a-poller.service"],
        ["systemctl", "restart", "nats-server.service"],
    ]
    assert agent.spawn.timeouts == [300, 30]


def test_a_failing_command_fails_its_step_with_its_last_lines() -> None:
    output = b"".join(b"line %d\n" % i for i in range(1, 8)) + b"Job failed.\n"
    agent = fake_agent({("systemctl", "restart"): (1, output)})
    assert agent.apply({"op": "systemctl", "args": ["restart", "a-poller.service"]}) == 1
    assert events(agent) == [
        (
            0,
            False,
            "systemctl restart a-poller.service exited 1: "
            "line 4 / line 5 / line 6 / line 7 / Job failed.",
        )
    ]


def test_a_command_past_its_timeout_fails_its_step() -> None:
    agent = fake_agent({("systemctl",): None})
    assert agent.apply({"op": "systemctl", "args": ["stop", "x.service"], "timeout": 5}) == 1
    assert events(agent) == [(0, False, "systemctl timed out after 5s")]


def test_removing_what_is_already_gone_succeeds(tmp_path: Path) -> None:
    agent = fake_agent()
    gone = str(tmp_path / "gone")
    assert (
        agent.apply(
            {"op": "remove_file", "path": gone},
            {"op": "remove_dir", "path": gone},
            {"op": "remove_empty_dir", "path": gone},
            {"op": "remove_package", "package": "nats-server", "binary": gone},
            {"op": "remove_package", "package": "fleet-poller", "venv": f"{gone}/venv"},
        )
        == 0
    )
    assert [e["ok"] for e in agent.events] == [True] * 5


def test_a_dir_with_something_else_in_it_is_not_removed_as_empty(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "theirs").write_text("x")
    (tmp_path / "empty").mkdir()
    agent = fake_agent()
    assert (
        agent.apply(
            {"op": "remove_empty_dir", "path": str(tmp_path / "kept")},
            {"op": "remove_empty_dir", "path": str(tmp_path / "empty")},
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_removing_the_poller_takes_its_link_and_every_venv_beside_it(tmp_path: Path) -> None:
    opt = tmp_path / "opt" / "fleet"
    for name in ("venv-0.1.0_a", "venv-0.2.0_b", "other"):
        (opt / name / "bin").mkdir(parents=True)
    (opt / "venv").symlink_to("venv-0.2.0_b")
    agent = fake_agent()
    step = {"op": "remove_package", "package": "fleet-poller", "venv": str(opt / "venv")}
    assert agent.apply(step) == 0
    assert sorted(p.name for p in opt.iterdir()) == ["other"]  # not the poller's: kept
    (opt / "other" / "bin").rmdir()
    (opt / "other").rmdir()
    (opt / "venv-0.3.0_c").mkdir()
    assert agent.apply(step) == 0
    assert not opt.exists()  # nothing else there: its directory goes too


def wheelhouse(where: Path, pip: bytes = b"pip wheel", digest: str | None = None) -> Path:
    where.mkdir(parents=True)
    (where / "pip-24.0-py3-none-any.whl").write_bytes(pip)
    (where / "requirements.txt").write_text("fleet-poller==0.2.0 --hash=sha256:aa\n")
    digest = digest or hashlib.sha256(pip).hexdigest()
    (where / "SHA256SUMS").write_text(
        f"{'1' * 64}  fleet_poller-0.2.0.whl\n{digest}  pip-24.0-py3-none-any.whl\n"
    )
    return where


def test_the_poller_installs_into_a_new_venv_and_the_link_switches_to_it(tmp_path: Path) -> None:
    opt, staged = tmp_path / "opt" / "fleet", wheelhouse(tmp_path / "staging" / "wh")
    for old in ("venv-0.1.0_a", "venv-0.0.9_z"):
        (opt / old).mkdir(parents=True)
    (opt / "venv").symlink_to("venv-0.1.0_a")
    agent = fake_agent()
    asked = as_tester(agent)
    link, target = opt / "venv", opt / "venv-0.2.0_b"
    step = {
        "op": "install_poller",
        "link": str(link),
        "version": "0.2.0+b",
        "wheelhouse": str(staged),
        "previous": str(opt / "venv-0.1.0_a"),
    }
    assert agent.apply(step) == 0, agent.events
    assert agent.spawn.calls == [
        [sys.executable, "-m", "venv", "--without-pip", str(target)],
        [
            f"{target}/bin/python",
            f"{staged}/pip-24.0-py3-none-any.whl/pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(staged),
            "--require-hashes",
            "--no-deps",
            "--disable-pip-version-check",
            "-r",
            f"{staged}/requirements.txt",
        ],
    ]
    assert agent.spawn.timeouts == [300, 600]
    assert os.readlink(link) == "venv-0.2.0_b"
    assert (target / "fleet-poller.version").read_text() == "0.2.0+b\n"
    assert asked == [(str(target / "fleet-poller.version"), "root", "root")]
    # The previous venv stays for a rollback; older ones and the staged wheelhouse go.
    assert sorted(p.name for p in opt.iterdir()) == ["venv", "venv-0.1.0_a", "venv-0.2.0_b"]
    assert not staged.exists()


@pytest.mark.parametrize(
    ("pip", "digest", "error"),
    [
        (
            b"pip wheel",
            "0" * 64,
            "pip-24.0-py3-none-any.whl does not match its sha256 in SHA256SUMS",
        ),
        (None, None, "the wheelhouse has no pip wheel"),
    ],
)
def test_a_wheelhouse_whose_pip_does_not_check_out_runs_nothing(
    tmp_path: Path, pip: bytes | None, digest: str | None, error: str
) -> None:
    staged = wheelhouse(tmp_path / "wh", digest=digest)
    if pip is None:
        sums = staged / "SHA256SUMS"
        sums.write_text("".join(s + "\n" for s in sums.read_text().splitlines() if "pip-" not in s))
    agent = fake_agent()
    step = {
        "op": "install_poller",
        "link": str(tmp_path / "venv"),
        "version": "0.2.0",
        "wheelhouse": str(staged),
    }
    assert agent.apply(step) == 1
    assert events(agent) == [(0, False, error)]
    assert agent.spawn.calls == [
        [sys.executable, "-m", "venv", "--without-pip", f"{tmp_path}/venv-0.2.0"]
    ]
    assert not (tmp_path / "venv").exists()


def test_a_binary_is_installed_checked_and_its_upload_removed(tmp_path: Path) -> None:
    src, dest = tmp_path / "staging" / "nats-server", tmp_path / "usr" / "nats-server"
    src.parent.mkdir()
    src.write_bytes(b"\x7fELF binary")
    agent = fake_agent()
    asked = as_tester(agent)
    good = hashlib.sha256(b"\x7fELF binary").hexdigest()
    step = {"op": "install_binary", "src": str(src), "dest": str(dest)}
    assert agent.apply(step | {"sha256": "0" * 64}) == 1
    assert events(agent) == [(0, False, f"{src} arrived damaged")]
    assert (src.exists(), dest.exists()) == (True, False)
    assert agent.apply(step | {"sha256": good}) == 0
    assert dest.read_bytes() == b"\x7fELF binary"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert asked == [(str(dest), "root", "root")]
    assert not src.exists()


EXPECT = ["allowstreamlocalforwarding no", "permitlisten none"]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    """A stand-in for the listening sshd (a process a SIGHUP ends) and what `sshd -T`
    says: the expected settings and where its pid file is."""
    proc = subprocess.Popen(["sleep", "60"])
    (tmp_path / "sshd.pid").write_text(f"{proc.pid}\n")
    said = "\n".join([*EXPECT, f"pidfile {tmp_path / 'sshd.pid'}", ""]).encode()
    try:
        yield proc, said
    finally:
        proc.kill()
        proc.wait()


def hung_up(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the stand-in sshd got its SIGHUP (the agent sent it before returning)."""
    try:
        return proc.wait(timeout=5) == -signal.SIGHUP
    except subprocess.TimeoutExpired:
        return False


def sshd_step(path: Path, data: bytes) -> dict[str, Any]:
    return file_step(path, data, 0o644) | {
        "op": "sshd_config",
        "user": "fleet-tunnel",
        "expect": EXPECT,
    }


def test_an_sshd_drop_in_is_checked_by_sshd_then_sshd_reloads(
    tmp_path: Path, sshd: tuple[subprocess.Popen[bytes], bytes]
) -> None:
    proc, said = sshd
    dropin = tmp_path / "sshd_config.d" / "fleet-tunnel.conf"
    agent = fake_agent({("/usr/sbin/sshd", "-T"): (0, said)})
    assert agent.apply(sshd_step(dropin, b"Match User fleet-tunnel\n")) == 0
    assert dropin.read_bytes() == b"Match User fleet-tunnel\n"
    assert agent.spawn.calls == [
        ["/usr/sbin/sshd", "-t"],
        ["/usr/sbin/sshd", "-T", "-C", "user=fleet-tunnel,host=fleetctl,addr=127.0.0.1"],
    ]
    assert hung_up(proc)


@pytest.mark.parametrize("before", [None, b"Match User fleet-tunnel\n\tPermitListen none\n"])
def test_a_drop_in_sshd_refuses_is_put_back_as_it_was_and_sshd_not_reloaded(
    tmp_path: Path, sshd: tuple[subprocess.Popen[bytes], bytes], before: bytes | None
) -> None:
    proc, _ = sshd
    dropin = tmp_path / "fleet-tunnel.conf"
    if before is not None:
        dropin.write_bytes(before)
    agent = fake_agent({("/usr/sbin/sshd", "-t"): (255, b"line 2: Bad option\n")})
    assert agent.apply(sshd_step(dropin, b"\tNoSuchOption yes\n")) == 1
    assert events(agent) == [(0, False, "/usr/sbin/sshd -t exited 255: line 2: Bad option")]
    assert (dropin.read_bytes() if dropin.exists() else None) == before
    assert proc.poll() is None  # not reloaded


def test_a_drop_in_sshd_would_not_read_is_refused_with_the_fix(
    tmp_path: Path, sshd: tuple[subprocess.Popen[bytes], bytes]
) -> None:
    proc, _ = sshd
    dropin = tmp_path / "fleet-tunnel.conf"
    unread = b"allowstreamlocalforwarding yes\npermitlisten any\n"  # sshd -T without the drop-in
    agent = fake_agent({("/usr/sbin/sshd", "-T"): (0, unread)})
    assert agent.apply(sshd_step(dropin, b"Match User fleet-tunnel\n")) == 1
    assert events(agent) == [
        (
            0,
            False,
            f"sshd does not apply {dropin}: add `Include /etc/ssh/sshd_config.d/*.conf` at the "
            "top of /etc/ssh/sshd_config",
        )
    ]
    assert not dropin.exists() and proc.poll() is None


def test_removing_a_drop_in_reloads_sshd_without_it_and_a_missing_one_runs_nothing(
    tmp_path: Path, sshd: tuple[subprocess.Popen[bytes], bytes]
) -> None:
    proc, said = sshd
    dropin = tmp_path / "fleet-tunnel.conf"
    agent = fake_agent({("/usr/sbin/sshd", "-T"): (0, said)})
    assert agent.apply({"op": "remove_sshd_config", "path": str(dropin)}) == 0
    assert agent.spawn.calls == [] and proc.poll() is None
    dropin.write_text("Match User fleet-tunnel\n")
    assert agent.apply({"op": "remove_sshd_config", "path": str(dropin)}) == 0
    assert not dropin.exists()
    assert agent.spawn.calls == [
        ["/usr/sbin/sshd", "-T", "-C", "user=root,host=fleetctl,addr=127.0.0.1"]
    ]
    assert hung_up(proc)
