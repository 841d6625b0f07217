"""The LLM CLIs' locks: one per pinned CLI, for exactly its pin, every tarball with its
integrity, and a record of every package tree npm installs on the recorded platforms."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from fleetctl.artifacts import clilock
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.layout import cli_dir_name
from poller.backends import BACKENDS, CliPackage

PINNED = list(dict.fromkeys(b.cli for b in BACKENDS.values() if b.cli is not None))


def _fits(entry: dict[str, object], os_name: str, cpu: str, libc: str | None) -> bool:
    """Whether npm installs a package of the lock on a platform (its os, cpu, libc)."""
    for key, value in (("os", os_name), ("cpu", cpu), ("libc", libc)):
        allowed = entry.get(key)
        if isinstance(allowed, list) and value is not None and value not in allowed:
            return False
    return True


@pytest.mark.parametrize("cli", PINNED, ids=lambda c: c.package)
def test_each_pinned_cli_has_a_lock_for_exactly_its_pin(cli: CliPackage) -> None:
    lock = clilock.load(cli)  # package.json, the lock's version, integrity, trees.json
    assert lock.dir == clilock.LOCKS_DIR / cli_dir_name(cli.package, cli.version)
    packages = json.loads((lock.dir / "package-lock.json").read_text())["packages"]
    assert packages[f"node_modules/{cli.package}"]["version"] == cli.version
    # Every package npm would install on a recorded platform has its tree recorded, and
    # nothing else is.
    wanted = {
        path
        for path, entry in packages.items()
        if path and any(_fits(entry, *platform) for platform in clilock.PLATFORMS)
    }
    assert set(lock.trees) == wanted


def test_the_shipped_locks_are_the_pins_and_nothing_else() -> None:
    shipped = {d.name for d in clilock.LOCKS_DIR.iterdir()}
    assert shipped == {cli_dir_name(c.package, c.version) for c in PINNED}


def test_a_version_without_a_lock_is_refused_and_the_message_says_how_to_add_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    codex = BACKENDS["codex"].cli
    assert codex is not None
    other = dataclasses.replace(codex, version="0.172.0")
    with pytest.raises(ArtifactError) as caught:
        clilock.load(other)
    assert str(caught.value) == (
        f"no lock for @openai/codex 0.172.0 in "
        f"{tmp_path / 'fleetctl' / 'llm-cli-locks' / '@openai+codex@0.172.0'}: "
        "`python -m fleetctl.artifacts.clilock @openai/codex@0.172.0` writes it there "
        "(review it: it is what every host will run)"
    )
    # Where the operator keeps one: found there.
    shutil.copytree(
        clilock.lock_dir(codex), tmp_path / "fleetctl" / "llm-cli-locks" / "@openai+codex@0.172.0"
    )
    with pytest.raises(ArtifactError, match=r"package\.json must depend on exactly"):
        clilock.load(other)


def _copy(tmp_path: Path) -> tuple[CliPackage, Path]:
    cli = PINNED[0]
    shutil.copytree(clilock.lock_dir(cli), tmp_path / cli_dir_name(cli.package, cli.version))
    return cli, tmp_path / cli_dir_name(cli.package, cli.version)


def test_a_lock_entry_without_integrity_is_refused(tmp_path: Path) -> None:
    """npm ci would take any tarball for it."""
    cli, where = _copy(tmp_path)
    lock = json.loads((where / "package-lock.json").read_text())
    entry = lock["packages"][f"node_modules/{cli.package}"]
    del entry["integrity"]
    raw = json.dumps(lock, indent=2).encode()
    (where / "package-lock.json").write_bytes(raw)
    trees = json.loads((where / clilock.TREES).read_text())
    trees["lock_sha256"] = hashlib.sha256(raw).hexdigest()
    (where / clilock.TREES).write_text(json.dumps(trees))
    with pytest.raises(ArtifactError, match=f"node_modules/{cli.package} has no sha512"):
        clilock.load(cli, tmp_path)


def test_records_not_made_from_this_lock_are_refused(tmp_path: Path) -> None:
    cli, where = _copy(tmp_path)
    raw = (where / "package-lock.json").read_text()
    (where / "package-lock.json").write_text(raw.replace('"requires": true', '"requires": false'))
    with pytest.raises(ArtifactError, match=r"trees\.json was not made from this"):
        clilock.load(cli, tmp_path)


def test_each_entry_of_an_install_belongs_to_its_package_or_is_refused() -> None:
    check = clilock.TreeCheck()
    for rel, kind, value in [
        ("node_modules", "d", ""),
        ("node_modules/@s", "d", ""),
        ("node_modules/@s/a", "d", ""),
        ("node_modules/@s/a/index.js", "f", "1" * 64),
        ("node_modules/@s/a/node_modules", "d", ""),
        ("node_modules/@s/a/node_modules/b", "d", ""),
        ("node_modules/@s/a/node_modules/b/x.js", "f", "2" * 64),
        ("node_modules/@s/a/node_modules/.bin", "d", ""),
        ("node_modules/@s/a/node_modules/.bin/x", "l", "../b/x.js"),
        ("node_modules/.bin", "d", ""),
        ("node_modules/.bin/a", "l", "../@s/a/index.js"),
        ("node_modules/.bin/out", "l", "../../../etc/passwd"),
        ("node_modules/.bin/plain", "f", "3" * 64),
        ("node_modules/@s/x.js", "f", "4" * 64),  # a file where a package should be
    ]:
        check.add(rel, kind, value)
    digests = check.digests()
    assert sorted(digests) == [
        "node_modules/@s/a",
        "node_modules/@s/a/node_modules/b",
        "node_modules/@s/x.js",
    ]
    lock = clilock.CliLock(
        CliPackage("@s/a", "1.0.0", "a"),
        Path("/locks"),
        "0" * 64,
        {k: v for k, v in digests.items() if k != "node_modules/@s/x.js"},
    )
    assert check.compare(lock) == [
        "node_modules/@s/x.js is not a package the lock records",
        "node_modules/.bin/out is not a link to a file of the lock's packages",
        "node_modules/.bin/plain is not a link to a file of the lock's packages",
    ]


def test_dev_lock_clis_writes_nothing_while_the_locks_fit_and_refuses_an_unknown_package(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = sorted(p.name for p in clilock.LOCKS_DIR.iterdir())
    assert clilock.main([]) == 0  # every lock fits its pin: no npm, nothing written
    assert sorted(p.name for p in clilock.LOCKS_DIR.iterdir()) == before
    assert clilock.main(["left-pad"]) == 1
    assert "left-pad: not a pinned CLI (@anthropic-ai/claude-code, " in capsys.readouterr().err
