"""The wheelhouse without a network: versioning, the self-built poller wheel, tags, caching."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fleetctl.artifacts import wheelhouse
from fleetctl.artifacts.wheelhouse import Target, WheelhouseError
from fleetctl.artifacts.wheellock import Locked

HOST = Target(python="3.11", platform="linux-x86_64", libc="glibc-2.36")
REAL_POLLER = wheelhouse._poller_dir()


@pytest.fixture
def poller_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the poller sources, so tests can edit them without touching the repo."""
    copy = tmp_path / "src" / "poller"
    shutil.copytree(REAL_POLLER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(wheelhouse, "_poller_dir", lambda: copy)
    return copy


# --- poller_version --------------------------------------------------------------------------


def test_poller_version_is_the_project_version_plus_a_source_hash() -> None:
    version = wheelhouse.poller_version()
    assert re.fullmatch(r"[0-9][^+]*\+[0-9a-f]{12}", version), version
    assert version.split("+")[0] == importlib.metadata.version("fleetctl")
    assert wheelhouse.poller_version() == version


def test_poller_version_depends_only_on_the_sources(poller_copy: Path) -> None:
    real = wheelhouse.poller_version()
    monkeypatched = wheelhouse.poller_version()
    assert monkeypatched == real  # a faithful copy is the same poller
    (poller_copy / "__pycache__").mkdir()
    (poller_copy / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"junk")
    os.utime(poller_copy / "config.py", (0, 0))
    assert wheelhouse.poller_version() == real  # bytecode and mtimes are not the source


def test_poller_version_changes_with_any_source_edit(poller_copy: Path) -> None:
    before = wheelhouse.poller_version()
    config = poller_copy / "config.py"
    config.write_text(config.read_text() + "\n# edited\n")
    edited = wheelhouse.poller_version()
    assert edited != before
    (poller_copy / "extra.py").write_text("")
    assert wheelhouse.poller_version() not in (before, edited)


def test_poller_version_changes_with_a_pinned_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    before = wheelhouse.poller_version()
    pins = {**wheelhouse._pins(), "nkeys": "0.0.1"}
    monkeypatch.setattr(wheelhouse, "_pins", lambda: pins)
    assert wheelhouse.poller_version() != before


def test_poller_version_is_cheap() -> None:
    import time

    start = time.perf_counter()
    for _ in range(10):
        wheelhouse.poller_version()
    assert (time.perf_counter() - start) / 10 < 0.05


# --- build_poller_wheel ----------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_the_wheel_is_named_for_the_version_and_its_record_verifies(tmp_path: Path) -> None:
    version = wheelhouse.poller_version()
    wheel = wheelhouse.build_poller_wheel(tmp_path)
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
    version = wheelhouse.poller_version()
    wheel = wheelhouse.build_poller_wheel(tmp_path)
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
    first = wheelhouse.build_poller_wheel(tmp_path / "a").read_bytes()
    for path in poller_copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))  # mtimes must not leak in
    second = wheelhouse.build_poller_wheel(tmp_path / "b").read_bytes()
    assert first == second


def test_the_wheel_follows_the_sources(tmp_path: Path, poller_copy: Path) -> None:
    (poller_copy / "added.py").write_text("ADDED = 1\n")
    wheel = wheelhouse.build_poller_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("poller/added.py") == b"ADDED = 1\n"


# --- Target.key and platform tags ------------------------------------------------------------


def test_target_key_is_readable_for_real_hosts() -> None:
    assert HOST.key == "py3.11_linux-x86_64_glibc-2.36"
    assert Target("3.12", "linux-aarch64", "-").key == "py3.12_linux-aarch64_-"


@pytest.mark.parametrize(
    "target",
    [
        Target("3.11", "linux/../../etc", "glibc-2.36"),
        Target("3.11", "..", ".."),
        Target("3.11", "linux x86_64", "glibc\n2.36"),
        Target("3_11", "linux", "x"),
    ],
)
def test_target_key_is_a_safe_single_path_component(target: Target) -> None:
    key = target.key
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key), key
    assert key not in (".", "..") and not key.startswith(".")


def test_target_keys_do_not_collide() -> None:
    a = Target("3.11", "linux-x86_64", "glibc-2.36")
    b = Target("3.11", "linux x86_64", "glibc-2.36")
    c = Target("3.11_linux", "x86_64", "glibc-2.36")
    assert len({a.key, b.key, c.key}) == 3


def test_platform_tags_for_glibc_2_36_x86_64() -> None:
    tags = wheelhouse.platform_tags(HOST)
    assert tags == (
        *(f"manylinux_2_{m}_x86_64" for m in range(36, 16, -1)),
        "manylinux2014_x86_64",
    )
    assert tags[0] == "manylinux_2_36_x86_64" and tags[-2] == "manylinux_2_17_x86_64"


def test_platform_tags_for_glibc_2_36_aarch64() -> None:
    tags = wheelhouse.platform_tags(Target("3.11", "linux-aarch64", "glibc-2.36"))
    assert tags == (
        *(f"manylinux_2_{m}_aarch64" for m in range(36, 16, -1)),
        "manylinux2014_aarch64",
    )


def test_platform_tags_for_musl_and_unknown_libc() -> None:
    musl = wheelhouse.platform_tags(Target("3.12", "linux-x86_64", "musl-1.2.4"))
    assert musl == ("musllinux_1_2_x86_64", "musllinux_1_1_x86_64")
    unknown = wheelhouse.platform_tags(Target("3.11", "linux-x86_64", "-"))
    assert unknown == ("manylinux_2_17_x86_64", "manylinux2014_x86_64")


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        (Target("3.11", "linux-x86_64", "glibc-2.12"), "older than 2.17"),
        (Target("3.11", "macosx-14.0-arm64", "-"), "not Linux"),
        (Target("3.11", "linux-x86_64", "uclibc-1.0"), "neither glibc nor musl"),
    ],
)
def test_platform_tags_refuse_hosts_without_wheels(target: Target, needle: str) -> None:
    with pytest.raises(WheelhouseError, match=needle):
        wheelhouse.platform_tags(target)


# --- build() with a fake pip -----------------------------------------------------------------


def _content(name: str, version: str, how: str) -> bytes:
    return f"{how} {name}=={version}".encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FAKE_LOCK = {
    name: Locked(name, version, frozenset(hashes))
    for name, version, hashes in [
        # nats-py publishes a wheel (pip wheel fetches it), nkeys only an sdist (built here)
        ("nats-py", "2.16.0", {_digest(_content("nats-py", "2.16.0", "wheel"))}),
        ("nkeys", "0.2.1", {_digest(b"the sdist")}),
        ("pynacl", "1.6.2", {_digest(_content("pynacl", "1.6.2", "download"))}),
        ("pip", "26.3", {_digest(_content("pip", "26.3", "download"))}),
    ]
}


class FakePip:
    """Stands in for `pip wheel` / `pip download`: writes wheel files whose contents the fake
    lock's hashes describe, records each call and the requirement file it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.requirements: list[list[str]] = []
        self.fail: str | None = None

    def __call__(self, target: Target, *args: str) -> None:
        self.calls.append(args)
        assert "--require-hashes" in args
        lines = Path(args[args.index("-r") + 1]).read_text().splitlines()
        self.requirements.append(lines)
        if self.fail and args[0] == "download":
            dest = Path(args[args.index("-d") + 1])
            dest.mkdir(parents=True, exist_ok=True)
            (dest / "half-written.whl").write_bytes(b"x")
            raise WheelhouseError(self.fail)
        out = Path(args[args.index("-w" if args[0] == "wheel" else "-d") + 1])
        out.mkdir(parents=True)
        for line in lines:
            spec = line.split(" ")[0]
            if spec.endswith(".whl"):
                shutil.copy(spec, out)
                continue
            name, version = spec.split("==")
            how = "wheel" if args[0] == "wheel" else "download"
            wheel = out / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            wheel.write_bytes(_content(name, version, how))


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> FakePip:
    fake = FakePip()
    monkeypatch.setattr(wheelhouse, "_pip", fake)
    monkeypatch.setattr(wheelhouse, "_lock", lambda: FAKE_LOCK)
    return fake


def _wheel_names(files: tuple[Path, ...]) -> list[str]:
    return [p.name for p in files]


def test_build_downloads_once_and_then_reuses_the_cache(tmp_path: Path, fake_pip: FakePip) -> None:
    first = wheelhouse.build(HOST, tmp_path)
    assert [c[0] for c in fake_pip.calls] == ["wheel", "download"]
    download = fake_pip.calls[1]
    assert "--only-binary=:all:" in download
    assert download[download.index("--python-version") + 1] == "3.11"
    assert download[download.index("--implementation") + 1] == "cp"
    platforms = [download[i + 1] for i, a in enumerate(download) if a == "--platform"]
    assert platforms == list(wheelhouse.platform_tags(HOST))
    assert fake_pip.requirements[0] == [FAKE_LOCK[n].requirement() for n in ("nats-py", "nkeys")]
    local = {line.split("/")[-1].split(" ")[0] for line in fake_pip.requirements[1] if "/" in line}
    assert local == {"nats_py-2.16.0-py3-none-any.whl", "nkeys-0.2.1-py3-none-any.whl"}
    assert FAKE_LOCK["pip"].requirement() in fake_pip.requirements[1]
    assert FAKE_LOCK["pynacl"].requirement() in fake_pip.requirements[1]

    version = wheelhouse.poller_version()
    assert first.version == version
    assert first.path == tmp_path / "builds" / version / HOST.key
    assert all(p.parent == first.path for p in first.files)
    names = _wheel_names(first.files)
    assert f"fleet_poller-{version}-py3-none-any.whl" in names
    assert any(n.startswith("pip-") for n in names)
    assert any(n.startswith("nkeys-") for n in names) and any(
        n.startswith("nats_py-") for n in names
    )
    assert sorted(first.path.iterdir()) == sorted(first.contents)
    digests = {p.name: _digest(p.read_bytes()) for p in first.files}
    assert (first.path / "SHA256SUMS").read_text() == "".join(
        f"{digests[n]}  {n}\n" for n in sorted(digests)
    )
    installs = sorted(n for n in digests if not n.startswith("pip-"))
    assert (first.path / "requirements.txt").read_text().splitlines() == [
        "{}=={} --hash=sha256:{}".format(*wheelhouse._wheel_dist(Path(n)), digests[n])
        for n in installs
    ]

    second = wheelhouse.build(HOST, tmp_path)
    assert len(fake_pip.calls) == 2  # no pip, so no network
    assert second == first
    assert all(p.is_file() for p in second.files)


def test_build_reuses_nothing_across_targets(tmp_path: Path, fake_pip: FakePip) -> None:
    wheelhouse.build(HOST, tmp_path)
    other = wheelhouse.build(Target("3.12", "linux-aarch64", "glibc-2.31"), tmp_path)
    assert len(fake_pip.calls) == 4
    assert other.path.name == "py3.12_linux-aarch64_glibc-2.31"


def test_a_failed_download_leaves_nothing_half_finished(tmp_path: Path, fake_pip: FakePip) -> None:
    fake_pip.fail = "pip download failed: cannot reach the package index (offline)"
    with pytest.raises(WheelhouseError, match="cannot reach the package index"):
        wheelhouse.build(HOST, tmp_path)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []
    fake_pip.fail = None
    house = wheelhouse.build(HOST, tmp_path)
    assert "half-written.whl" not in _wheel_names(house.files)


def test_a_damaged_cache_is_downloaded_again(tmp_path: Path, fake_pip: FakePip) -> None:
    house = wheelhouse.build(HOST, tmp_path)
    cached = next((tmp_path / "deps").rglob("pynacl-*.whl"))
    cached.unlink()
    again = wheelhouse.build(HOST, tmp_path)
    assert len(fake_pip.calls) == 4
    assert _wheel_names(again.files) == _wheel_names(house.files)


@pytest.mark.parametrize("victim", ["pynacl-", "nkeys-"])  # a locked download, a wheel built here
def test_a_swapped_wheel_in_the_cache_is_refused(
    tmp_path: Path, fake_pip: FakePip, victim: str
) -> None:
    house = wheelhouse.build(HOST, tmp_path)
    cached = next(p for p in (tmp_path / "deps").rglob("*.whl") if p.name.startswith(victim))
    original = cached.read_bytes()
    cached.write_bytes(bytes(b ^ 1 for b in original))  # same name, same size, other bytes
    with pytest.raises(WheelhouseError, match=r"wheelhouse cache: .* has sha256 [0-9a-f]{64}") as e:
        wheelhouse.build(HOST, tmp_path)
    assert str(cached) in str(e.value) and "delete" in str(e.value)
    assert len(fake_pip.calls) == 2  # refused, not quietly downloaded again
    cached.write_bytes(original)
    assert wheelhouse.build(HOST, tmp_path) == house


def test_a_wheel_slipped_into_the_cache_is_not_shipped(tmp_path: Path, fake_pip: FakePip) -> None:
    wheelhouse.build(HOST, tmp_path)
    deps = next((tmp_path / "deps").rglob("pynacl-*.whl")).parent
    (deps / "evil-1.0-py3-none-any.whl").write_bytes(b"evil")
    again = wheelhouse.build(HOST, tmp_path)
    assert "evil-1.0-py3-none-any.whl" not in _wheel_names(again.files)
    assert "evil" not in (again.path / "requirements.txt").read_text()


def test_the_poller_version_follows_the_whole_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    before = wheelhouse.poller_version()
    lock = dict(wheelhouse._lock())
    cffi = lock["cffi"]  # not a direct pin: only the lock says it changed
    lock["cffi"] = Locked(cffi.name, cffi.version, frozenset({"0" * 64}), cffi.marker)
    monkeypatch.setattr(wheelhouse, "_lock", lambda: lock)
    assert wheelhouse.poller_version() != before


def test_a_changed_poller_gets_its_own_directory(
    tmp_path: Path, fake_pip: FakePip, poller_copy: Path
) -> None:
    old = wheelhouse.build(HOST, tmp_path)
    (poller_copy / "config.py").write_text("# changed\n")
    new = wheelhouse.build(HOST, tmp_path)
    assert new.version != old.version and new.path != old.path
    assert len(fake_pip.calls) == 2  # the dependencies did not change
    assert all(p.is_file() for p in old.files + new.files)


def test_a_tampered_wheelhouse_is_replaced(tmp_path: Path, fake_pip: FakePip) -> None:
    house = wheelhouse.build(HOST, tmp_path)
    poller_wheel = next(p for p in house.files if p.name.startswith("fleet_poller-"))
    poller_wheel.write_bytes(b"tampered")
    (house.path / "stray.whl").write_bytes(b"")
    again = wheelhouse.build(HOST, tmp_path)
    assert _wheel_names(again.files) == _wheel_names(house.files)
    assert poller_wheel.read_bytes() != b"tampered"


def test_a_run_builds_each_target_once(tmp_path: Path, fake_pip: FakePip) -> None:
    builds = wheelhouse.Builds(tmp_path)
    other = Target("3.12", "linux-aarch64", "glibc-2.31")
    first = builds.get(HOST)
    assert builds.get(HOST) is first and builds.get(other).path.name == other.key
    assert [c[0] for c in fake_pip.calls] == ["wheel", "download"] * 2
    fake_pip.fail = "pip download failed: offline"
    failing = wheelhouse.Builds(tmp_path / "elsewhere")
    for _ in range(3):
        with pytest.raises(WheelhouseError, match="offline"):
            failing.get(HOST)
    assert len(fake_pip.calls) == 6  # the failure is remembered: one attempt, not three


def test_the_default_cache_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wheelhouse.default_cache_dir() == tmp_path / "xdg" / "fleetctl" / "wheelhouse"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert wheelhouse.default_cache_dir() == tmp_path / "home" / ".cache/fleetctl/wheelhouse"


def test_too_old_a_host_python_fails_before_any_download(tmp_path: Path, fake_pip: FakePip) -> None:
    with pytest.raises(WheelhouseError, match=r"python 3\.9 is too old"):
        wheelhouse.build(Target("3.9", "linux-x86_64", "glibc-2.36"), tmp_path)
    assert fake_pip.calls == []


# --- pip's failures, boiled down -------------------------------------------------------------


def _failing_run(output: str, command: str) -> object:
    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if command not in cmd:
            return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=output)

    return run


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        (
            "ERROR: Could not find a version that satisfies the requirement nkeys==0.2.1\n",
            "pip wheel failed: a pinned dependency is not on the package index",
        ),
        (
            "ERROR: Failed building wheel for nkeys\n",
            "pip wheel failed: cannot build a wheel",
        ),
        (
            "WARNING: Retrying ... NewConnectionError(...)\n"
            "ERROR: Could not find a version that satisfies the requirement nkeys==0.2.1\n",
            "cannot reach the package index",
        ),
        (
            "ERROR: Could not find a version that satisfies the requirement pynacl\n"
            "ERROR: No matching distribution found for pynacl\n",
            "no wheel for Python 3.11 on linux-x86_64",
        ),
        ("/usr/bin/python: No module named pip\n", "pip is not installed"),
        ("ERROR: something else entirely\n", "something else entirely"),
    ],
)
def test_pip_failures_become_one_actionable_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, output: str, needle: str
) -> None:
    command = "wheel" if needle.startswith("pip wheel") else "download"
    monkeypatch.setattr(subprocess, "run", _failing_run(output, command))
    with pytest.raises(WheelhouseError, match=needle) as caught:
        wheelhouse.build(HOST, tmp_path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("pip ")
    assert not (tmp_path / "builds").exists()


# --- nats-server -----------------------------------------------------------------------------


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
    assert wheelhouse.nats_server_binary() == binary


def test_nats_server_binary_falls_back_to_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python"))
    on_path = _fake_nats_server(tmp_path / "path", tmp_path / "count")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert wheelhouse.nats_server_binary() == on_path
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert wheelhouse.nats_server_binary() is None


# --- built elsewhere, brought along (FLEETCTL_WHEELHOUSE) -----------------------------------


def _export(out: Path, *args: str) -> str:
    from click.testing import CliRunner

    from fleetctl.cli.main import cli

    done = CliRunner().invoke(cli, ["wheelhouse", "build", "--out", str(out), *args])
    assert done.exit_code == 0, done.output
    return done.output


def test_wheelhouse_build_out_writes_one_set_per_host_type(
    tmp_path: Path, fake_pip: FakePip
) -> None:
    out = tmp_path / "brought"
    shown = _export(out, "--python", "3.11", "--platform", "linux-x86_64",
                    "--python", "3.12", "--platform", "linux-aarch64")  # fmt: skip
    downloads = [c for c in fake_pip.calls if c[0] == "download"]
    assert [d[d.index("--python-version") + 1] for d in downloads] == ["3.11", "3.12"]
    assert [[d[i + 1] for i, a in enumerate(d) if a == "--platform"] for d in downloads] == [
        ["manylinux_2_17_x86_64", "manylinux2014_x86_64"],
        ["manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    ]
    assert sorted(p.name for p in (out / "deps").iterdir()) == [
        "py3.11_linux-x86_64_-",
        "py3.12_linux-aarch64_-",
    ]
    assert (
        shown.splitlines()[-1]
        == f"Use it where the index is out of reach: FLEETCTL_WHEELHOUSE={out} fleetctl apply ..."
    )


def test_a_brought_wheelhouse_is_used_without_the_index_and_checked(
    tmp_path: Path, fake_pip: FakePip, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "brought"
    _export(out, "--python", "3.11", "--platform", "linux-x86_64")
    calls = len(fake_pip.calls)
    monkeypatch.setenv("FLEETCTL_WHEELHOUSE", str(out))
    house = wheelhouse.build(HOST, tmp_path / "cache")  # glibc 2.36 takes the baseline set
    assert len(fake_pip.calls) == calls  # no index asked
    names = _wheel_names(house.files)
    assert f"fleet_poller-{house.version}-py3-none-any.whl" in names
    assert {n.split("-")[0] for n in names} == {"fleet_poller", "nats_py", "nkeys", "pynacl", "pip"}
    assert not (out / "builds").exists()  # the brought directory is only read

    pynacl = next(out.rglob("pynacl-*.whl"))
    pynacl.write_bytes(pynacl.read_bytes() + b"\0")
    with pytest.raises(WheelhouseError, match=r"wheelhouse cache: .*pynacl.* has sha256"):
        wheelhouse.build(HOST, tmp_path / "cache")

    with pytest.raises(WheelhouseError) as e:
        wheelhouse.build(Target("3.12", "linux-x86_64", "musl-1.2.4"), tmp_path / "cache")
    assert str(e.value) == (
        f"{out} (FLEETCTL_WHEELHOUSE) has no wheels for Python 3.12 on linux-x86_64 "
        "(musl-1.2.4) with this fleetctl's poller lock: on a machine that reaches the package "
        "index, run `fleetctl wheelhouse build --out DIR --python 3.12 --platform "
        "linux-x86_64` with this fleetctl version and bring DIR along"
    )
    assert len(fake_pip.calls) == calls
