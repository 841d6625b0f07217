"""The poller's own wheel without a network: its version, and the wheel zipped here."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import zipfile
from pathlib import Path

import pytest

from fleetctl.artifacts import pollerwheel, wheellock
from fleetctl.artifacts.wheellock import Locked

REAL_POLLER = pollerwheel._poller_dir()


# --- poller_version --------------------------------------------------------------------------


def test_poller_version_is_the_project_version_plus_a_source_hash() -> None:
    version = pollerwheel.poller_version()
    assert re.fullmatch(r"[0-9][^+]*\+[0-9a-f]{12}", version), version
    assert version.split("+")[0] == importlib.metadata.version("fleetctl")
    assert pollerwheel.poller_version() == version


def test_poller_version_depends_only_on_the_sources(poller_copy: Path) -> None:
    real = pollerwheel.poller_version()
    monkeypatched = pollerwheel.poller_version()
    assert monkeypatched == real  # a faithful copy is the same poller
    (poller_copy / "__pycache__").mkdir()
    (poller_copy / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"junk")
    os.utime(poller_copy / "config.py", (0, 0))
    assert pollerwheel.poller_version() == real  # bytecode and mtimes are not the source


def test_poller_version_changes_with_any_source_edit(poller_copy: Path) -> None:
    before = pollerwheel.poller_version()
    config = poller_copy / "config.py"
    config.write_text(config.read_text() + "\n# edited\n")
    edited = pollerwheel.poller_version()
    assert edited != before
    (poller_copy / "extra.py").write_text("")
    assert pollerwheel.poller_version() not in (before, edited)


def test_poller_version_changes_with_a_pinned_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    before = pollerwheel.poller_version()
    pins = {**pollerwheel.pins(), "nkeys": "0.0.1"}
    monkeypatch.setattr(pollerwheel, "pins", lambda: pins)
    assert pollerwheel.poller_version() != before


def test_the_poller_version_follows_the_whole_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    before = pollerwheel.poller_version()
    lock = dict(wheellock.poller_lock())
    cffi = lock["cffi"]  # not a direct pin: only the lock says it changed
    lock["cffi"] = Locked(cffi.name, cffi.version, frozenset({"0" * 64}), cffi.marker)
    monkeypatch.setattr(wheellock, "poller_lock", lambda: lock)
    assert pollerwheel.poller_version() != before


def test_poller_version_is_cheap() -> None:
    import time

    start = time.perf_counter()
    for _ in range(10):
        pollerwheel.poller_version()
    assert (time.perf_counter() - start) / 10 < 0.05


# --- build_poller_wheel ----------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_the_wheel_is_named_for_the_version_and_its_record_verifies(tmp_path: Path) -> None:
    version = pollerwheel.poller_version()
    wheel = pollerwheel.build_poller_wheel(tmp_path)
    assert wheel == tmp_path / f"fleet_poller-{version}-py3-none-any.whl"
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name]  # no temp file left behind
    info = f"fleet_poller-{version}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        rows = [r.split(",") for r in zf.read(f"{info}/RECORD").decode().splitlines()]
        assert names[-1] == f"{info}/RECORD"
        assert sorted(r[0] for r in rows) == sorted(names)
        for name, digest, size in rows:
            if name == f"{info}/RECORD":
                assert (digest, size) == ("", "")
                continue
            data = zf.read(name)
            assert digest == _record_hash(data), name
            assert int(size) == len(data), name
        for zi in zf.infolist():
            assert zi.date_time == (1980, 1, 1, 0, 0, 0)
            assert (zi.external_attr >> 16) & 0o777 == 0o644
    assert "poller/__main__.py" in names and "poller/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    sources = {
        p.relative_to(REAL_POLLER.parent).as_posix()
        for p in REAL_POLLER.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {n for n in names if not n.startswith(info)} == sources


def test_the_wheel_metadata_names_the_pins_and_the_console_script(tmp_path: Path) -> None:
    version = pollerwheel.poller_version()
    wheel = pollerwheel.build_poller_wheel(tmp_path)
    info = f"fleet_poller-{version}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"{info}/METADATA").decode().splitlines()
        wheel_file = zf.read(f"{info}/WHEEL").decode().splitlines()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert "Name: fleet-poller" in metadata
    assert f"Version: {version}" in metadata
    requires = sorted(line for line in metadata if line.startswith("Requires-Dist:"))
    assert requires == [
        f"Requires-Dist: nats-py=={importlib.metadata.version('nats-py')}",
        f"Requires-Dist: nkeys=={importlib.metadata.version('nkeys')}",
    ]
    assert "Requires-Python: >=3.11" in metadata
    assert "Root-Is-Purelib: true" in wheel_file and "Tag: py3-none-any" in wheel_file
    assert "Wheel-Version: 1.0" in wheel_file
    assert entry_points == "[console_scripts]\nfleet-poller = poller.__main__:main\n"


def test_the_wheel_is_byte_reproducible(tmp_path: Path, poller_copy: Path) -> None:
    first = pollerwheel.build_poller_wheel(tmp_path / "a").read_bytes()
    for path in poller_copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))  # mtimes must not leak in
    second = pollerwheel.build_poller_wheel(tmp_path / "b").read_bytes()
    assert first == second


def test_the_wheel_follows_the_sources(tmp_path: Path, poller_copy: Path) -> None:
    (poller_copy / "added.py").write_text("ADDED = 1\n")
    wheel = pollerwheel.build_poller_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("poller/added.py") == b"ADDED = 1\n"
