"""The real LLM CLIs live with the poller unit's system-call filter.

The hosts run the poller under systemd; this machine has no systemd as PID 1 and the simulated
hosts' systemctl ignores sandboxing. So the one sandbox setting a CLI could break on at random
(a system call it makes that the list leaves out) is applied here by hand: the rendered
poller unit's `SystemCallFilter=` lines, expanded with `systemd-analyze syscall-filter`, are
loaded as a seccomp filter (calls outside it fail with EPERM, as `SystemCallErrorNumber=`
says) in front of each CLI, which then does one real task with a tool call.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetctl.desired import desired_state
from tests.contract.test_real_clis import Task, _claude_env, _codex_home, _tasks
from tests.support.example import example_fleet
from tests.support.natsserver import NatsServer
from tests.support.provider_mock import ProviderMock, Turn

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = "/usr/bin/python3"
LAUNCHER = """\
import errno, json, os, sys
import seccomp
allowed = set(json.loads(os.environ.pop("UNIT_SYSCALLS")))
no_namespaces = bool(os.environ.pop("UNIT_NO_NAMESPACES", ""))
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
if no_namespaces:
    # RestrictNamespaces=yes, as systemd does it: clone and unshare only without namespace
    # flags, no setns, and clone3 (whose flags a filter cannot see) answers ENOSYS so that
    # libc falls back to clone.
    ns = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
    for name in ("clone", "unshare"):
        if name in allowed:
            f.add_rule(seccomp.ALLOW, name, seccomp.Arg(0, seccomp.MASKED_EQ, ns, 0))
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    allowed -= {"clone", "unshare", "setns", "clone3"}
for name in sorted(allowed):
    try:
        f.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError):
        pass  # not a call of this architecture
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"""


def _groups() -> dict[str, list[str]]:
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.split()[0])
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= _expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def poller_unit() -> str:
    return next(
        f.content.decode()
        for f in desired_state(example_fleet()).hosts["worker-node-1"].files
        if f.path.endswith("-poller.service")
    )


def unit_syscalls() -> set[str]:
    """What the rendered poller unit allows (it has no `~` deny lines: checked)."""
    unit = poller_unit()
    lines = re.findall(r"^SystemCallFilter=(.*)$", unit, re.MULTILINE)
    assert lines and not any(v.startswith("~") for v in lines)
    assert "SystemCallErrorNumber=EPERM" in unit.splitlines()
    import os

    extra = os.environ.get("XEXTRA", "").split()
    return _expand([n for v in lines for n in v.split()] + extra, _groups())


@pytest.fixture
def filtered(real_cli: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """backend -> a launcher that loads the unit's filter, then execs the real CLI."""
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    if shutil.which("systemd-analyze") is None or probe.returncode != 0:
        pytest.skip("needs systemd-analyze and python3-seccomp (./dev test as root installs them)")
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    allowed = json.dumps(sorted(unit_syscalls()))
    no_ns = "1" if "RestrictNamespaces=yes" in poller_unit().splitlines() else ""
    out = {}
    for name, cli in real_cli.items():
        wrapper = tmp_path / f"{name}-filtered"
        wrapper.write_text(
            f"#!/bin/sh\nUNIT_SYSCALLS='{allowed}' UNIT_NO_NAMESPACES={no_ns} "
            f'exec {SYSTEM_PYTHON} {launcher} {cli} "$@"\n'
        )
        wrapper.chmod(0o755)
        out[name] = wrapper
    return out


def test_the_filter_is_in_force(filtered: dict[str, Path], tmp_path: Path) -> None:
    """Calls outside the list fail (chroot, which root may otherwise make), and so does a
    new namespace, while a plain child process starts."""
    launcher = tmp_path / "launcher.py"
    probe = (
        "import ctypes, errno, os, subprocess\n"
        "try:\n    os.chroot('/')\nexcept PermissionError:\n    print('EPERM')\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.unshare(0x10000000) == -1 and ctypes.get_errno() == errno.EPERM:\n"
        "    print('EPERM')\n"
        "print(subprocess.run(['true']).returncode)"
    )
    env = {"UNIT_SYSCALLS": json.dumps(sorted(unit_syscalls())), "UNIT_NO_NAMESPACES": "1"}
    done = subprocess.run(
        [SYSTEM_PYTHON, str(launcher), SYSTEM_PYTHON, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.stdout.split() == ["EPERM", "EPERM", "0"], done


def test_claude_code_writes_a_file(
    filtered: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    out_file = work / "repo" / "out.txt"
    write = Turn(tool="Write", args={"file_path": str(out_file), "content": "filtered\n"})
    env = _claude_env(filtered["claude"], mock.url)
    [(result, _)] = _tasks(server, work, mock, env, [(write, Turn(text="wrote it"))])
    assert (result["status"], result["output"]) == ("completed", "wrote it"), result
    assert out_file.read_text() == "filtered\n"


@pytest.mark.parametrize(
    "sandbox",
    [
        "danger-full-access",  # the unit is the sandbox
        pytest.param(
            "workspace-write",
            marks=pytest.mark.xfail(
                strict=True,
                reason="codex's own sandbox is bubblewrap, which needs namespaces "
                "(RestrictNamespaces=yes) and mount calls (not in @system-service): "
                "docs/security.md",
            ),
        ),
    ],
)
def test_codex_patches_a_file(
    sandbox: str, filtered: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    _codex_home(work, mock.url)
    patch = "*** Begin Patch\n*** Add File: out.txt\n+filtered\n*** End Patch\n"
    tasks: list[Task] = [(Turn(tool="apply_patch", freeform=patch), Turn(text="patched"))]
    env = {
        "MODEL_BACKEND": "codex",
        "LLM": "codex",
        "CODEX_BIN": str(filtered["codex"]),
        "CODEX_MODEL": "gpt-5.5",
        "CODEX_SANDBOX": sandbox,
        "OPENAI_API_KEY": "dummy",
    }
    [(result, _)] = _tasks(server, work, mock, env, tasks)
    assert (result["status"], result["output"]) == ("completed", "patched"), result
    assert (work / "repo" / "out.txt").is_file()  # the patch tool wrote it


def test_gemini_writes_a_file(
    filtered: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    (work / ".gemini").mkdir()
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    (work / ".gemini" / "settings.json").write_text(json.dumps(settings))
    out_file = work / "repo" / "out.txt"
    write = Turn(tool="write_file", args={"file_path": str(out_file), "content": "filtered\n"})
    env = {
        "MODEL_BACKEND": "gemini",
        "LLM": "gemini",
        "GEMINI_BIN": str(filtered["gemini"]),
        "GEMINI_MODEL": "gemini-2.5-pro",
        "GEMINI_API_KEY": "dummy",
        "GOOGLE_GEMINI_BASE_URL": mock.url,
        "GEMINI_APPROVAL_MODE": "auto_edit",
    }
    [(result, _)] = _tasks(server, work, mock, env, [(write, Turn(text="wrote it"))])
    assert (result["status"], result["output"]) == ("completed", "wrote it"), result
    assert out_file.read_text() == "filtered\n"
