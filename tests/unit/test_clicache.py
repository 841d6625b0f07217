"""The CLI cache: only a completed install counts, and a missing npm says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl import clicache
from poller.backends import CliPackage

CLI = CliPackage("@scope/some-cli", "1.2.3", "some")


def test_only_a_completed_install_is_found(tmp_path: Path) -> None:
    d = clicache.package_dir(CLI, tmp_path)
    assert d == tmp_path / "@scope+some-cli@1.2.3"
    (d / "node_modules" / ".bin").mkdir(parents=True)
    assert clicache.installed_bin(CLI, tmp_path) is None  # interrupted: not done
    (d / ".complete").write_text("@scope/some-cli@1.2.3\n")
    assert clicache.installed_bin(CLI, tmp_path) == d / "node_modules" / ".bin" / "some"
    assert clicache.install(CLI, tmp_path) == d / "node_modules" / ".bin" / "some"


def test_without_npm_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(clicache.CliInstallError, match="npm is not on PATH"):
        clicache.install(CLI, tmp_path / "cache")


def test_the_cache_is_outside_any_checkout_and_ignores_a_relative_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert clicache.default_cache_dir() == tmp_path / "fleetctl" / "llm-clis"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "per-test-home"))  # not used: the real home is
    assert clicache.default_cache_dir().parts[-3:] == (".cache", "fleetctl", "llm-clis")
    assert not str(clicache.default_cache_dir()).startswith(str(tmp_path))
