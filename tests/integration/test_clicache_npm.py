"""The real npm installs an LLM CLI from its lock: `npm ci` with install scripts off, every
tarball checked against the lock's integrity. The registry is a local stand-in
(tests/support/npm_registry.py) serving a small stand-in CLI with a postinstall script."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl.artifacts import clicache, clilock
from fleetctl.artifacts.errors import ArtifactError
from tests.support.fakecli import CLI
from tests.support.npm_registry import Registry, running_registry

POSTINSTALL_RAN = "postinstall-ran"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH (apt-get install npm)")
    with running_registry() as served:
        monkeypatch.setenv("npm_config_registry", served.url)
        monkeypatch.setenv("npm_config_update_notifier", "false")
        monkeypatch.setenv("npm_config_userconfig", str(tmp_path / "npmrc"))  # not ~/.npmrc
        publish(served, tmp_path / POSTINSTALL_RAN, says="1.2.3")
        yield served


def publish(registry: Registry, marker: Path, says: str) -> None:
    manifest = {
        "name": CLI.package,
        "version": CLI.version,
        "bin": {CLI.bin: "bin/fake.sh"},
        "scripts": {"postinstall": f"echo ran > {marker}"},
    }
    script = f'#!/bin/sh\necho "fake-cli {says}"\n'
    registry.publish(manifest, {"bin/fake.sh": (script, 0o755), "README.md": ("fake\n", 0o644)})


def npm_cache(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """npm's own tarball cache: a fresh one makes npm ask the registry again."""
    monkeypatch.setenv("npm_config_cache", str(where))


def test_a_cli_is_installed_from_its_lock_and_no_install_script_runs(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npm_cache(monkeypatch, tmp_path / "npm-cache")
    where = clilock.write_lock(CLI, tmp_path / "locks", platforms=(("linux", "x64", "glibc"),))
    lock = clilock.load(CLI, tmp_path / "locks")
    assert lock.dir == where and set(lock.trees) == {"node_modules/@scope/fake-cli"}
    packages = (where / "package-lock.json").read_text()
    assert registry.packument(CLI.package)["versions"]["1.2.3"]["dist"]["integrity"] in packages
    npm_cache(monkeypatch, tmp_path / "npm-cache-2")
    command = clicache.install(CLI, tmp_path / "cache", tmp_path / "locks")
    assert subprocess.run([command], capture_output=True, text=True).stdout == "fake-cli 1.2.3\n"
    assert not (tmp_path / POSTINSTALL_RAN).exists()
    assert clicache.installed(CLI, tmp_path / "cache", tmp_path / "locks") == command


def test_a_tarball_that_differs_from_the_lock_is_refused_and_nothing_is_cached(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npm_cache(monkeypatch, tmp_path / "npm-cache")
    clilock.write_lock(CLI, tmp_path / "locks", platforms=(("linux", "x64", "glibc"),))
    publish(registry, tmp_path / POSTINSTALL_RAN, says="pwned")  # same version, other bytes
    npm_cache(monkeypatch, tmp_path / "npm-cache-2")
    with pytest.raises(ArtifactError, match="EINTEGRITY"):
        clicache.install(CLI, tmp_path / "cache", tmp_path / "locks")
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / ".lock"]
    assert not (tmp_path / POSTINSTALL_RAN).exists()
