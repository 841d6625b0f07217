"""A host's python3 as the wheelhouse must fit it: its cache key and its platform tags."""

from __future__ import annotations

import re

import pytest

from fleetctl.artifacts import hostpython
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target

HOST = Target(python="3.11", platform="linux-x86_64", libc="glibc-2.36")


# --- Target.key ------------------------------------------------------------------------------


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


# --- platform tags ---------------------------------------------------------------------------


def test_platform_tags_for_glibc_2_36_x86_64() -> None:
    tags = hostpython.platform_tags(HOST)
    assert tags == (
        *(f"manylinux_2_{m}_x86_64" for m in range(36, 16, -1)),
        "manylinux2014_x86_64",
    )
    assert tags[0] == "manylinux_2_36_x86_64" and tags[-2] == "manylinux_2_17_x86_64"


def test_platform_tags_for_glibc_2_36_aarch64() -> None:
    tags = hostpython.platform_tags(Target("3.11", "linux-aarch64", "glibc-2.36"))
    assert tags == (
        *(f"manylinux_2_{m}_aarch64" for m in range(36, 16, -1)),
        "manylinux2014_aarch64",
    )


def test_platform_tags_for_musl_and_unknown_libc() -> None:
    musl = hostpython.platform_tags(Target("3.12", "linux-x86_64", "musl-1.2.4"))
    assert musl == ("musllinux_1_2_x86_64", "musllinux_1_1_x86_64")
    unknown = hostpython.platform_tags(Target("3.11", "linux-x86_64", "-"))
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
    with pytest.raises(ArtifactError, match=needle):
        hostpython.platform_tags(target)
