"""The real LLM CLIs live with the poller unit's system-call filter and RestrictNamespaces.

The hosts run the poller under systemd; this machine has no systemd as PID 1 and the simulated
hosts' systemctl ignores sandboxing. So the settings a CLI could break on at random (a system
call it makes that the list leaves out, a namespace it wants) are applied here by hand
(tests/support/unit_filter.py) in front of each CLI, which then edits code in its task's worktree
through the real poller, its own tools doing the editing; the diff comes back in the result.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.contract.test_real_clis import _claude_env, _codex_home, _tasks, added, worktree
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


def test_claude_code_edits_code_and_the_diff_comes_back(
    filtered: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    """Claude Code's own Read, Edit and Write tools change its worktree of `app`; the
    poller commits that on the task's branch and the result carries the diff."""
    wt = worktree(work, "w1", 0)
    turns = (
        Turn(tool="Read", args={"file_path": str(wt / "a.txt")}),
        Turn(
            tool="Edit",
            args={"file_path": str(wt / "a.txt"), "old_string": "one", "new_string": "ONE"},
        ),
        Turn(tool="Write", args={"file_path": str(wt / "new.txt"), "content": "filtered\n"}),
        Turn(text="edited"),
    )
    env = _claude_env(filtered["claude"], mock.url, CLAUDE_MAX_TURNS="5")
    [(result, _)] = _tasks(server, work, mock, env, [turns])
    assert (result["status"], result["output"]) == ("completed", "edited"), result
    _assert_change(result["code"], {"a.txt": (["ONE"], 1), "new.txt": (["filtered"], 0)})


def _assert_change(code: dict[str, Any], files: dict[str, tuple[list[str], int]]) -> None:
    """The change is exactly `files`: each path with the lines it adds and how many it
    deletes; committed on the task's branch."""
    assert code["branch"] == "af/w1-t0/w1" and code["head"] != code["base"], code
    assert {f["path"]: f["deletions"] for f in code["files"]} == {
        path: deletions for path, (_, deletions) in files.items()
    }
    assert added(code) == [line for lines, _ in files.values() for line in lines]


@pytest.mark.parametrize("sandbox", ["danger-full-access", "workspace-write", "read-only"])
def test_codex_edits_code_only_with_the_unit_as_its_sandbox(
    sandbox: str, filtered: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    """Codex's patch tool and its shell change its worktree, with `danger-full-access`:
    the unit is the sandbox. Its own sandboxes are bubblewrap, which cannot make its
    namespaces under the unit (RestrictNamespaces=yes, no `mount` in the filter): with
    `workspace-write` or `read-only` every command it runs fails and nothing changes
    (docs/security.md, "Unit hardening")."""
    _codex_home(work, mock.url)
    patch = "*** Begin Patch\n*** Update File: a.txt\n@@\n-one\n+patched\n*** End Patch\n"
    turns = (
        Turn(tool="apply_patch", freeform=patch),
        Turn(tool="exec_command", args={"cmd": "printf 'by shell\\n' >> b.txt"}),
        Turn(text="done"),
    )
    env = {
        "MODEL_BACKEND": "codex",
        "LLM": "codex",
        "CODEX_BIN": str(filtered["codex"]),
        "CODEX_MODEL": "gpt-5.5",
        "CODEX_SANDBOX": sandbox,
        "OPENAI_API_KEY": "dummy",
    }
    [(result, _)] = _tasks(server, work, mock, env, [turns])
    assert (result["status"], result["output"]) == ("completed", "done"), result
    code = result["code"]
    if sandbox == "danger-full-access":
        _assert_change(code, {"a.txt": (["patched"], 1), "b.txt": (["by shell"], 0)})
        return
    assert (code["files"], code["branch"]) == ([], None)
    outputs = [
        str(item.get("output"))
        for seen in mock.seen
        for item in (seen.body.get("input") or [])
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]
    assert any("bwrap: No permissions to create a new namespace" in o for o in outputs), outputs


def test_gemini_edits_code_and_the_diff_comes_back(
    filtered: dict[str, Path], server: NatsServer, work: Path, mock: ProviderMock
) -> None:
    (work / ".gemini").mkdir()
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    (work / ".gemini" / "settings.json").write_text(json.dumps(settings))
    wt = worktree(work, "w1", 0)
    turns = (
        Turn(tool="write_file", args={"file_path": str(wt / "a.txt"), "content": "rewritten\n"}),
        Turn(tool="write_file", args={"file_path": str(wt / "new.txt"), "content": "filtered\n"}),
        Turn(text="wrote it"),
    )
    env = {
        "MODEL_BACKEND": "gemini",
        "LLM": "gemini",
        "GEMINI_BIN": str(filtered["gemini"]),
        "GEMINI_MODEL": "gemini-2.5-pro",
        "GEMINI_API_KEY": "dummy",
        "GOOGLE_GEMINI_BASE_URL": mock.url,
        "GEMINI_APPROVAL_MODE": "auto_edit",
    }
    [(result, _)] = _tasks(server, work, mock, env, [turns])
    assert (result["status"], result["output"]) == ("completed", "wrote it"), result
    _assert_change(result["code"], {"a.txt": (["rewritten"], 1), "new.txt": (["filtered"], 0)})
