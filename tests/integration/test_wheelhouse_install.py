"""A real wheelhouse installed the way hosts do it: fresh venv, pip from its wheel, no index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleetctl.artifacts import pollerwheel, wheelhouse
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target
from fleetctl.artifacts.wheelhouse import Wheelhouse
from fleetctl.reconcile import agent_client
from tests.support.natsserver import free_port

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = Path("/usr/bin/python3")
PROBE = (
    "import json, platform, sys, sysconfig; print(json.dumps({"
    "'python': '%d.%d' % sys.version_info[:2], "
    "'platform': sysconfig.get_platform(), "
    "'libc': '-'.join(platform.libc_ver())}))"
)


def host_python() -> Path:
    """The interpreter standing in for a host's python3: the system one, like on real hosts."""
    return SYSTEM_PYTHON if SYSTEM_PYTHON.exists() else Path(sys.executable)


def probe(python: Path) -> Target:
    out = subprocess.run(
        [str(python), "-c", PROBE], capture_output=True, text=True, check=True, timeout=30
    )
    return Target(**json.loads(out.stdout))


def host_env() -> dict[str, str]:
    """No pip configuration and no index on the host side, as on a host without registry access."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_NO_INDEX"] = "1"
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def build_or_skip(target: Target, cache: Path) -> Wheelhouse:
    try:
        return wheelhouse.build(target, cache)
    except ArtifactError as e:
        if "cannot reach the package index" in str(e):
            pytest.skip(f"no network to fetch the dependency wheels: {e}")
        raise


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


def install_on_host(python: Path, house: Wheelhouse, staging: Path, link: Path) -> list[Any]:
    """What apply does on a host: the wheelhouse staged there, the agent's install step."""
    shutil.copytree(house.path, staging)
    step = {"op": "install_poller", "link": str(link), "version": house.version}
    step["wheelhouse"] = str(staging)
    done = subprocess.run(
        [str(python), "-I", "-S", "-"],
        input=agent_client.agent_program({"op": "apply", "steps": [step]}),
        capture_output=True,
        timeout=300,
        env=host_env(),
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_wheelhouse_installs_offline_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = host_python()
    target = probe(python)
    cache = tmp_path / "cache"
    house = build_or_skip(target, cache)
    assert house.version == pollerwheel.poller_version()
    pips = [w for w in house.files if w.name.startswith("pip-")]
    assert len(pips) == 1 and pips[0].name.endswith("-py3-none-any.whl")

    link = tmp_path / "venv"
    events = install_on_host(python, house, tmp_path / "staging", link)
    assert [e["ok"] for e in events] == [True], events
    venv = link.resolve()
    assert not (tmp_path / "staging").exists()  # the step cleans up after itself

    check = (
        "import importlib.metadata as m, poller.__main__, nats, nkeys, nacl.signing; "
        "print(m.version('fleet-poller'))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", check],
        capture_output=True,
        text=True,
        timeout=60,
        env=host_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == house.version

    # the console script exists and gets as far as reading its (here empty) configuration
    script = venv / "bin" / "fleet-poller"
    assert script.is_file()
    ran = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, env={}
    )
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.startswith("fleet-poller: configuration error:"), ran.stderr

    # the second build comes from the cache: no pip, hence no network, and the same files
    before = snapshot(cache / "deps")

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the cached build ran a subprocess: {args}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    start = time.perf_counter()
    again = wheelhouse.build(target, cache)
    assert time.perf_counter() - start < 2
    assert again == house
    assert snapshot(cache / "deps") == before


def test_the_host_refuses_a_wheel_whose_hash_does_not_match(tmp_path: Path) -> None:
    """Swapped after fleetctl built the wheelhouse (in transit, in staging): pip says no."""
    python = host_python()
    house = build_or_skip(probe(python), tmp_path / "cache")
    name = next(w.name for w in house.files if w.name.startswith("nats_py-"))
    other = next(w for w in house.files if w.name.startswith("pycparser-"))  # a valid wheel
    swapped = tmp_path / "swapped"
    shutil.copytree(house.path, swapped)
    (swapped / name).unlink()
    shutil.copy(other, swapped / name)
    events = install_on_host(
        python, Wheelhouse(swapped, house.version, ()), tmp_path / "s1", tmp_path / "venv"
    )
    assert [e["ok"] for e in events] == [False], events
    assert "DO NOT MATCH THE HASHES" in events[0]["error"], events
    assert not (tmp_path / "venv").exists()

    pip = next(w.name for w in house.files if w.name.startswith("pip-"))
    (swapped / name).unlink()
    shutil.copy(house.path / name, swapped / name)
    (swapped / pip).write_bytes((swapped / pip).read_bytes() + b"\0")  # pip itself: never run
    events = install_on_host(
        python, Wheelhouse(swapped, house.version, ()), tmp_path / "s2", tmp_path / "venv"
    )
    assert events == [
        {"i": 0, "ok": False, "error": f"{pip} does not match its sha256 in SHA256SUMS"}
    ]


def test_an_unreachable_index_fails_every_host_at_once_after_one_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four hosts of one type, visited in parallel as apply does: one pip run, one message."""
    from concurrent.futures import ThreadPoolExecutor

    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no local mirror, no find-links
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")  # closed
    monkeypatch.setenv("PIP_RETRIES", "1")  # 0 would hide the connection error
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    real_run = subprocess.run
    pip_runs: list[list[str]] = []

    def counting_run(cmd: list[str], **kwargs: object) -> object:
        if cmd[1:3] == ["-m", "pip"]:
            pip_runs.append(cmd)
        return real_run(cmd, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", counting_run)
    builds = wheelhouse.Builds(tmp_path / "cache")
    target = probe(host_python())

    def visit(_: int) -> str:
        try:
            builds.get(target)
        except ArtifactError as e:
            return str(e)
        return "built"

    with ThreadPoolExecutor(4) as pool:
        messages = list(pool.map(visit, range(4)))
    assert len(pip_runs) == 1, pip_runs
    assert len(set(messages)) == 1, messages
    assert messages[0].startswith("pip wheel failed: cannot reach the package index"), messages
    assert not list((tmp_path / "cache").rglob("*.whl"))


def test_a_wheelhouse_built_elsewhere_installs_where_the_index_is_out_of_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python, out = host_python(), tmp_path / "brought"
    target = probe(python)
    fleetctl = Path(sys.executable).parent / "fleetctl"
    args = ["--python", target.python, "--platform", target.platform]
    done = subprocess.run(
        [str(fleetctl), "wheelhouse", "build", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 and "cannot reach the package index" in done.stderr:
        pytest.skip(f"no network to fetch the dependency wheels: {done.stderr}")
    assert done.returncode == 0, done.stderr

    # the control machine: no index at all, and the brought directory
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("FLEETCTL_WHEELHOUSE", str(out))
    house = wheelhouse.build(target, tmp_path / "cache")
    events = install_on_host(python, house, tmp_path / "staging", tmp_path / "venv")
    assert [e["ok"] for e in events] == [True], events
    version = (tmp_path / "venv" / "fleet-poller.version").read_text().strip()
    assert version == house.version
