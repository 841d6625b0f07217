"""An LLM CLI's bundle, built from a cache directory the way npm fills it, installed by the
host agent's `install_tree` step into a temporary directory (the agent runs locally)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fleetctl import agent_client, clibundle, clicache
from poller.backends import CliPackage

CLI = CliPackage("@scope/fake-cli", "1.2.3", "fake", node=20)
SCRIPT = '#!/bin/sh\necho "fake-cli $FAKE_VERSION"\n'


def cached_cli(cache: Path, version: str = "1.2.3") -> Path:
    """A completed cache install of the fake CLI: its command behind npm's .bin link, and a
    hard link to it elsewhere in the tree (Claude Code's package has one)."""
    root = clicache.package_dir(CLI, cache)
    pkg = root / "node_modules" / "@scope" / "fake-cli"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "bin" / "fake.sh").write_text(SCRIPT.replace("$FAKE_VERSION", version))
    (pkg / "bin" / "fake.sh").chmod(0o755)
    os.link(pkg / "bin" / "fake.sh", pkg / "copy.sh")
    (root / "node_modules" / ".bin").mkdir()
    (root / "node_modules" / ".bin" / "fake").symlink_to("../@scope/fake-cli/bin/fake.sh")
    (root / ".complete").write_text("done\n")
    return root


def install(bundle: Path, sha256: str, dest: Path, expect: str = "1.2.3") -> dict[str, Any]:
    step = {
        "op": "install_tree",
        "src": str(bundle),
        "sha256": sha256,
        "dest": str(dest),
        "check": ["bin/fake", "--version"],
        "expect": expect,
        "timeout": 10,
        "version_file": "fleet-llm-cli.version",
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-"],
        input=agent_client.agent_program({"op": "apply", "steps": [step]}),
        capture_output=True,
        timeout=60,
    )
    event: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    return event


def test_a_bundle_is_deterministic_and_installs_checked(tmp_path: Path) -> None:
    cached_cli(tmp_path / "cache")
    bundle = clibundle.build(CLI, tmp_path / "cache")
    first = bundle.path.read_bytes()
    assert hashlib.sha256(first).hexdigest() == bundle.sha256
    bundle.path.unlink()
    again = clibundle.build(CLI, tmp_path / "cache")
    assert again.path.read_bytes() == first  # same bytes when built again
    with tarfile.open(bundle.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    # A script with no native binary beside it: the command npm links, which runs on Node.
    assert members["bin/fake"].linkname == "../node_modules/@scope/fake-cli/bin/fake.sh"
    assert {(m.uid, m.uname, m.mtime) for m in members.values()} == {(0, "root", 0)}
    assert members["node_modules/@scope/fake-cli/copy.sh"].islnk()

    staged = tmp_path / "staging" / "fake.tar"
    staged.parent.mkdir()
    staged.write_bytes(first)
    dest = tmp_path / "opt" / "fake@1.2.3"
    assert install(staged, bundle.sha256, dest) == {
        "i": 0,
        "ok": True,
        "seconds": pytest.approx(0, abs=10),
    }
    assert subprocess.run([dest / "bin" / "fake"], capture_output=True, text=True).stdout == (
        "fake-cli 1.2.3\n"
    )
    assert (dest / "fleet-llm-cli.version").read_text() == "1.2.3\n"
    assert not staged.exists() and not (dest.parent / "fake@1.2.3.partial").exists()
    assert not (dest / ".home").exists()


def test_a_damaged_or_wrong_bundle_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    cached_cli(tmp_path / "cache", version="1.2.4")  # the CLI says another version
    bundle = clibundle.build(CLI, tmp_path / "cache")
    dest = tmp_path / "opt" / "fake@1.2.3"
    damaged = install(bundle.path, "0" * 64, dest)
    assert damaged["ok"] is False and "arrived damaged" in damaged["error"]
    wrong = install(bundle.path, bundle.sha256, dest)
    assert wrong["ok"] is False
    assert "says 'fake-cli 1.2.4', not version 1.2.3" in wrong["error"]
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial tree left


@pytest.mark.parametrize(
    ("name", "kind", "link", "why"),
    [
        ("/etc/evil", tarfile.REGTYPE, "", "outside its tree"),
        ("a/../../evil", tarfile.REGTYPE, "", "outside its tree"),
        ("bin/up", tarfile.SYMTYPE, "../../etc/passwd", "points outside"),
        ("bin/abs", tarfile.SYMTYPE, "/etc/passwd", "points outside"),
        ("bin/hard", tarfile.LNKTYPE, "../x", "points outside"),
        ("dev", tarfile.CHRTYPE, "", "not a file, dir or link"),
    ],
)
def test_a_bundle_member_outside_the_tree_is_refused(
    tmp_path: Path, name: str, kind: bytes, link: str, why: str
) -> None:
    bundle = tmp_path / "evil.tar"
    with tarfile.open(bundle, "w") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    sha256 = hashlib.sha256(bundle.read_bytes()).hexdigest()
    event = install(bundle, sha256, tmp_path / "opt" / "x")
    assert event["ok"] is False and why in event["error"]
    assert not (tmp_path / "opt" / "x").exists() and not (tmp_path / "evil").exists()


def test_a_script_without_node_in_the_registry_is_refused(tmp_path: Path) -> None:
    """Only a CLI the registry says runs on Node may be a script: the plan's Node check
    depends on it."""
    cached_cli(tmp_path / "cache")
    native_only = CliPackage(CLI.package, CLI.version, CLI.bin, node=None)
    with pytest.raises(clicache.CliInstallError, match=r"needs no Node\.js"):
        clibundle.build(native_only, tmp_path / "cache")


def test_a_host_of_another_architecture_gets_no_bundle() -> None:
    assert clibundle.foreign_host("linux-x86_64", here="x86_64") is None
    why = clibundle.foreign_host("linux-aarch64", here="x86_64")
    assert why is not None and "for x86_64, and the host is aarch64" in why
    odd = clibundle.foreign_host("linux-\x1b[2Jarm", here="x86_64")
    assert odd is not None and "\x1b" not in odd and "another architecture" in odd
