"""The dependency wheel cache with a fake pip (tests/support/fakepip.py): downloaded once per
host type, checked against the lock whenever it is reused, and a directory built elsewhere and
brought along (FLEETCTL_WHEELHOUSE) checked the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl.artifacts import wheelhouse
from fleetctl.artifacts.errors import ArtifactError, Tampered
from fleetctl.artifacts.hostpython import Target
from tests.support.fakepip import FakePip

HOST = Target(python="3.11", platform="linux-x86_64", libc="glibc-2.36")


def _wheel_names(files: tuple[Path, ...]) -> list[str]:
    return [p.name for p in files]


# --- the cache -------------------------------------------------------------------------------


def test_build_reuses_nothing_across_targets(tmp_path: Path, fake_pip: FakePip) -> None:
    wheelhouse.build(HOST, tmp_path)
    other = wheelhouse.build(Target("3.12", "linux-aarch64", "glibc-2.31"), tmp_path)
    assert len(fake_pip.calls) == 4
    assert other.path.name == "py3.12_linux-aarch64_glibc-2.31"


def test_a_failed_download_leaves_nothing_half_finished(tmp_path: Path, fake_pip: FakePip) -> None:
    fake_pip.fail = "pip download failed: cannot reach the package index (offline)"
    with pytest.raises(ArtifactError, match="cannot reach the package index"):
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
    with pytest.raises(ArtifactError, match=r"wheelhouse cache: .* has sha256 [0-9a-f]{64}") as e:
        wheelhouse.build(HOST, tmp_path)
    assert str(cached) in str(e.value) and "delete" in str(e.value)
    assert isinstance(e.value, Tampered)  # changed after the download, as a CLI entry can be
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


def test_too_old_a_host_python_fails_before_any_download(tmp_path: Path, fake_pip: FakePip) -> None:
    with pytest.raises(ArtifactError, match=r"python 3\.9 is too old"):
        wheelhouse.build(Target("3.9", "linux-x86_64", "glibc-2.36"), tmp_path)
    assert fake_pip.calls == []


# --- built elsewhere, brought along (FLEETCTL_WHEELHOUSE) ------------------------------------


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
    with pytest.raises(ArtifactError, match=r"wheelhouse cache: .*pynacl.* has sha256"):
        wheelhouse.build(HOST, tmp_path / "cache")

    with pytest.raises(ArtifactError) as e:
        wheelhouse.build(Target("3.12", "linux-x86_64", "musl-1.2.4"), tmp_path / "cache")
    assert str(e.value) == (
        f"{out} (FLEETCTL_WHEELHOUSE) has no wheels for Python 3.12 on linux-x86_64 "
        "(musl-1.2.4) with this fleetctl's poller lock: on a machine that reaches the package "
        "index, run `fleetctl wheelhouse build --out DIR --python 3.12 --platform "
        "linux-x86_64` with this fleetctl version and bring DIR along"
    )
    assert len(fake_pip.calls) == calls
