"""The wheelhouse without a network (a fake pip, tests/support/fakepip.py): what one build
holds, a directory per poller version and host type, and one build per host type a run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fleetctl.artifacts import hostpython, pollerwheel, wheelcache, wheelhouse
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target
from tests.support.fakepip import FAKE_LOCK, FakePip

HOST = Target(python="3.11", platform="linux-x86_64", libc="glibc-2.36")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    assert platforms == list(hostpython.platform_tags(HOST))
    assert fake_pip.requirements[0] == [FAKE_LOCK[n].requirement() for n in ("nats-py", "nkeys")]
    local = {line.split("/")[-1].split(" ")[0] for line in fake_pip.requirements[1] if "/" in line}
    assert local == {"nats_py-2.16.0-py3-none-any.whl", "nkeys-0.2.1-py3-none-any.whl"}
    assert FAKE_LOCK["pip"].requirement() in fake_pip.requirements[1]
    assert FAKE_LOCK["pynacl"].requirement() in fake_pip.requirements[1]

    version = pollerwheel.poller_version()
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
        "{}=={} --hash=sha256:{}".format(*wheelcache.wheel_dist(Path(n)), digests[n])
        for n in installs
    ]

    second = wheelhouse.build(HOST, tmp_path)
    assert len(fake_pip.calls) == 2  # no pip, so no network
    assert second == first
    assert all(p.is_file() for p in second.files)


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
        with pytest.raises(ArtifactError, match="offline"):
            failing.get(HOST)
    assert len(fake_pip.calls) == 6  # the failure is remembered: one attempt, not three


def test_the_default_cache_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wheelhouse.default_cache_dir() == tmp_path / "xdg" / "fleetctl" / "wheelhouse"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert wheelhouse.default_cache_dir() == tmp_path / "home" / ".cache/fleetctl/wheelhouse"
