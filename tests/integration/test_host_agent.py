"""The host agent run locally on this machine's python3: its stand-ins for `json`,
`subprocess` and `hashlib` behave like the real modules, and observing imports none of the
modules that made a no-op plan's agent start-ups slow (see docs/performance.md)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetctl.hostside import source
from fleetctl.reconcile import agent_client

SLOW_IMPORTS = {"json", "re", "subprocess", "hashlib", "typing", "base64", "enum"}
TRICKY: list[Any] = [
    {"b": [1, -2, 2.5, 1e-07, None, True, False], "a": {}, "": []},
    "plain",
    'quote " backslash \\ slash / controls \n\t\x00\x1f del \x7f',
    "é ß 中文 \u2028 \U0001f600 \udcff",  # BMP, astral and a lone surrogate (surrogateescape)
    [[], [[]], {"k": {"k": "v"}}],
    12345678901234567890,
]


def agent() -> dict[str, Any]:
    """The agent's module namespace, as the host's interpreter would build it."""
    namespace: dict[str, Any] = {"__name__": "agent"}
    exec(compile(source("agent"), "agent.py", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("value", TRICKY)
def test_the_codec_round_trips_with_the_json_module(value: Any) -> None:
    a = agent()
    assert json.loads(a["json_dumps"](value)) == value
    assert a["json_loads"](json.dumps(value)) == value
    assert a["json_dumps"](value) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "[1,]", "nope", '"unterminated'])
def test_the_codec_refuses_what_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        agent()["json_loads"](text)


def test_without_the_c_accelerators_the_agent_falls_back_to_the_plain_modules() -> None:
    future = "from __future__ import annotations\n"
    program = (
        future + "import sys\nfor m in ('_json', '_sha256', '_sha2'):\n    sys.modules[m] = None\n"
    ) + source("agent").replace(future, "")
    check = (
        "\nassert json_loads('{\"a\": [1]}') == {'a': [1]}"
        "\nassert json_dumps({'b': 1, 'a': None}) == '{\"a\": null, \"b\": 1}'"
        "\nassert new_sha256(b'x').hexdigest() == __import__('hashlib').sha256(b'x').hexdigest()"
        "\nassert 'json' in sys.modules and 'hashlib' in sys.modules\nprint('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-"],
        input=program + check,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 200_000)
    assert agent()["_sha256"](str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_spawn_captures_merges_and_times_out() -> None:
    spawn = agent()["spawn"]
    script = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert spawn(script, 10, merge_stderr=True) == (3, b"out\nerr\n")
    assert spawn(script, 10, merge_stderr=False) == (3, b"out\n")
    assert spawn(["cat"], 10, merge_stderr=False) == (0, b"")  # stdin is /dev/null
    assert spawn(["sh", "-c", "kill -TERM $$"], 10, merge_stderr=False) == (-15, b"")
    assert spawn(["sleep", "30"], 0.3, merge_stderr=False) is None
    with pytest.raises(OSError):
        spawn(["fleetctl-no-such-program"], 10, merge_stderr=False)


def run_agent(req: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", *flags, "-"],
        input=agent_client.agent_program(req).decode(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_observe_reads_the_manifest_and_stats_owned_files(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    wanted, owned = tmp_path / "wanted.conf", tmp_path / "owned-only.conf"
    wanted.write_text("a\n")
    owned.write_text("b\n")
    owned.chmod(0o600)
    manifest = {"resources": {f"file {owned}": None}, "revision": "r1"}
    (tmp_path / "state" / "manifest.json").write_text(json.dumps(manifest))
    req = {
        "op": "observe",
        "state_dir": str(tmp_path / "state"),
        "files": [str(wanted), str(tmp_path / "missing")],
        "contents": [str(wanted)],
        "versions": {},
    }
    done = run_agent(req)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["manifest"] == manifest and seen["journal"] is None
    assert seen["files"][str(wanted)]["sha256"] == hashlib.sha256(b"a\n").hexdigest()
    assert seen["files"][str(owned)]["mode"] == 0o600
    assert seen["files"][str(tmp_path / "missing")] is None
    assert seen["contents"] == {str(wanted): "YQo="}
    (tmp_path / "state" / "manifest.json").write_text("{not json")
    assert json.loads(run_agent(req).stdout)["manifest"] == {"_corrupt": True}


def test_observe_hashes_a_hashed_package_and_never_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    binary = tmp_path / "nats-server"  # a stand-in that leaves a mark when run
    binary.write_text(f"#!/bin/sh\ntouch {marker}\necho 'nats-server: v2.15.1'\n")
    binary.chmod(0o755)
    versions = {"nats-server": str(binary), "gone": str(tmp_path / "missing")}
    req = {"op": "observe", "state_dir": str(tmp_path), "versions": versions}
    done = run_agent(req | {"hashed": ["nats-server", "gone"]})
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    assert json.loads(done.stdout)["versions"] == {"nats-server": digest, "gone": None}
    assert not marker.exists()


def test_observing_imports_none_of_the_slow_modules(tmp_path: Path) -> None:
    req = {"op": "observe", "state_dir": str(tmp_path), "files": [], "versions": {}}
    done = run_agent(req, "-X", "importtime")
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not imported & SLOW_IMPORTS, sorted(imported & SLOW_IMPORTS)


def test_apply_runs_steps_in_order_and_reports_each(tmp_path: Path) -> None:
    import grp
    import os
    import pwd

    owner = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    data = b"unit text\n"
    target, gone = tmp_path / "etc" / "a.conf", tmp_path / "old.conf"
    gone.write_text("x")
    step = {"owner": owner, "group": group, "mode": 0o640}
    req = {
        "op": "apply",
        "steps": [
            {"op": "file", "path": str(target), "content": "dW5pdCB0ZXh0Cg==", **step}
            | {"sha256": hashlib.sha256(data).hexdigest()},
            {"op": "remove_file", "path": str(gone)},
            {"op": "file", "path": str(target), "content": "", "sha256": "0" * 64, **step},
        ],
    }
    done = run_agent(req)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1
    assert [(e["i"], e["ok"]) for e in events] == [(0, True), (1, True), (2, False)]
    assert "arrived damaged" in events[2]["error"]
    assert target.read_bytes() == data and (target.stat().st_mode & 0o777) == 0o640
    assert not gone.exists()
    assert [p.name for p in target.parent.iterdir()] == ["a.conf"]  # no temp file left
