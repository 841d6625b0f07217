"""An LLM CLI's bundle, built from a cache directory the way npm fills it and checked against
its lock as it is written, installed by the host agent's `install_tree` step into a
temporary directory (the agent runs locally)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fleetctl.artifacts import clibundle
from fleetctl.artifacts.errors import ArtifactError, Tampered
from fleetctl.reconcile import agent_client
from poller.backends import CliPackage
from tests.support.fakecli import CLI, cached_cli


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


def build(tmp_path: Path, name: str = "out") -> clibundle.Bundle:
    (tmp_path / name).mkdir()
    return clibundle.build(CLI, tmp_path / name, tmp_path / "cache", tmp_path / "locks")


def test_a_bundle_is_deterministic_and_installs_checked(tmp_path: Path) -> None:
    cached_cli(tmp_path / "cache", tmp_path / "locks")
    bundle = build(tmp_path)
    first = bundle.path.read_bytes()
    assert hashlib.sha256(first).hexdigest() == bundle.sha256
    again = build(tmp_path, "again")
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
    cached_cli(tmp_path / "cache", tmp_path / "locks", says="1.2.4")  # another version inside
    bundle = build(tmp_path)
    dest = tmp_path / "opt" / "fake@1.2.3"
    damaged = install(bundle.path, "0" * 64, dest)
    assert damaged["ok"] is False and "arrived damaged" in damaged["error"]
    wrong = install(bundle.path, bundle.sha256, dest)
    assert wrong["ok"] is False
    assert "says 'fake-cli 1.2.4', not version 1.2.3" in wrong["error"]
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial tree left


def test_a_swapped_bundle_and_its_sha256_are_never_shipped(tmp_path: Path) -> None:
    """An attacker who can write the cache replaces a bundle and the sha256 beside it, as
    older fleetctl versions kept them there; apply's bundle is built from the checked
    install and its sha256 is of the bytes written."""
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    cached_cli(cache, locks)
    with clibundle.Bundles(cache, locks) as bundles:
        honest = bundles.get(CLI)
        honest_bytes = honest.path.read_bytes()
    assert not honest.path.exists()  # gone with the run
    kept = clibundle.bundles_dir(cache)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("bin/fake")
        payload = b"#!/bin/sh\necho pwned\n"
        info.size, info.mode = len(payload), 0o755
        tar.addfile(info, io.BytesIO(payload))
    name = "@scope+fake-cli@1.2.3.tar"
    (kept / name).write_bytes(evil.read_bytes())
    (kept / f"{name}.sha256").write_text(hashlib.sha256(evil.read_bytes()).hexdigest() + "\n")
    with clibundle.Bundles(cache, locks) as bundles:
        shipped = bundles.get(CLI)
        assert shipped.path.read_bytes() == honest_bytes
        assert shipped.sha256 == hashlib.sha256(honest_bytes).hexdigest()
    assert not (kept / name).exists() and not (kept / f"{name}.sha256").exists()


def test_a_tampered_cache_entry_is_not_bundled(tmp_path: Path) -> None:
    root = cached_cli(tmp_path / "cache", tmp_path / "locks")
    script = root / "node_modules" / "@scope" / "fake-cli" / "bin" / "fake.sh"
    script.write_text("#!/bin/sh\necho pwned\n")  # the hard link beside it changes too
    with (
        clibundle.Bundles(tmp_path / "cache", tmp_path / "locks") as bundles,
        pytest.raises(Tampered) as caught,
    ):
        bundles.get(CLI)
    assert "node_modules/@scope/fake-cli differs from its recorded contents" in str(caught.value)
    assert f"remove {root} and run `fleetctl up --install-clis`" in str(caught.value)
    leftovers = list(clibundle.bundles_dir(tmp_path / "cache").rglob("*.tar"))
    assert leftovers == []


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
    native_only = CliPackage(CLI.package, CLI.version, CLI.bin, node=None)
    cached_cli(tmp_path / "cache", tmp_path / "locks", cli=native_only)
    (tmp_path / "out").mkdir()
    with pytest.raises(ArtifactError, match=r"needs no Node\.js"):
        clibundle.build(native_only, tmp_path / "out", tmp_path / "cache", tmp_path / "locks")


def test_a_host_of_another_architecture_gets_no_bundle() -> None:
    assert clibundle.foreign_host("linux-x86_64", here="x86_64") is None
    why = clibundle.foreign_host("linux-aarch64", here="x86_64")
    assert why is not None and "for x86_64, and the host is aarch64" in why
    odd = clibundle.foreign_host("linux-\x1b[2Jarm", here="x86_64")
    assert odd is not None and "\x1b" not in odd and "another architecture" in odd


def test_a_setuid_bit_planted_in_the_cache_reaches_no_host(tmp_path: Path) -> None:
    """The replay of item 5 (docs/security.md, "Attack replay"): modes are not in the tree
    records, so whoever can write the CLI cache can set the setuid and setgid bits on a
    file whose bytes are right. The bundle carries only 0644 and 0755, and the host unpacks
    what it is given with nothing but those: no file the agent installs as root is setuid."""
    root = cached_cli(tmp_path / "cache", tmp_path / "locks")
    target = root / "node_modules" / "@scope" / "fake-cli" / "bin" / "fake.sh"
    target.chmod(0o6777)
    bundle = build(tmp_path)
    with tarfile.open(bundle.path) as tar:
        modes = {m.mode for m in tar.getmembers() if not m.issym()}  # a link has none
    assert modes <= {0o644, 0o755}, sorted(oct(m) for m in modes)
    staged = tmp_path / "staging" / "fake.tar"
    staged.parent.mkdir()
    staged.write_bytes(bundle.path.read_bytes())
    dest = tmp_path / "opt" / "fake@1.2.3"
    assert install(staged, bundle.sha256, dest)["ok"] is True
    installed = {p.stat().st_mode & 0o7777 for p in dest.rglob("*") if not p.is_symlink()}
    assert not any(m & 0o6000 for m in installed), sorted(oct(m) for m in installed)
