"""The real LLM CLIs live with the poller unit's system-call filter and RestrictNamespaces.

The hosts run the poller under systemd; this machine has no systemd as PID 1 and the simulated
hosts' systemctl ignores sandboxing. So the settings a CLI could break on at random (a system
call it makes that the list leaves out, a namespace it wants) are applied here by hand
(tests/support/unit_filter.py) in front of each CLI, which then does one real task that
writes a file through the real poller.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.contract.test_real_clis import Task, _claude_env, _codex_home, _tasks
from tests.support import unit_filter
from tests.support.natsserver import NatsServer
from tests.support.provider_mock import ProviderMock, Turn

pytestmark = pytest.mark.integration


POLLER = unit_filter.unit_text("-poller.service")


@pytest.fixture
def filtered(real_cli: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """backend -> the real CLI run under the poller unit's filter."""
    reason = unit_filter.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return {name: unit_filter.wrap(tmp_path / name, POLLER, cli) for name, cli in real_cli.items()}


def test_the_filter_is_in_force(filtered: dict[str, Path], tmp_path: Path) -> None:
    """Calls outside the list fail (chroot, which root may otherwise make), and so does a
    new namespace, while a plain child process starts."""
    probe = (
        "import ctypes, errno, os, subprocess\n"
        "try:\n    os.chroot('/')\nexcept PermissionError:\n    print('EPERM')\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.unshare(0x10000000) == -1 and ctypes.get_errno() == errno.EPERM:\n"
        "    print('EPERM')\n"
        "print(subprocess.run(['true']).returncode)"
    )
    python = unit_filter.wrap(tmp_path / "python", POLLER, unit_filter.SYSTEM_PYTHON)
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
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
