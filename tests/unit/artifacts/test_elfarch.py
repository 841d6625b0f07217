"""A binary's CPU from its ELF header, a host's from its agent's platform, and whether the
one runs on the other: crafted headers as data, and the real nats-server ./dev installs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

import pytest

from fleetctl.artifacts.elfarch import HEADER_SIZE, NOT_ELF, SCRIPT, binary_arch, host_arch, unfit

REAL = Path(sys.executable).parent / "nats-server"  # what ./dev installs from the lock
ELF32, ELF64, LSB, MSB = 1, 2, 1, 2
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4


def elf(elf_class: int, data: int, e_type: int, e_machine: int, *, tail: bytes = b"") -> bytes:
    """The first bytes of an ELF file: e_ident (magic, class, data, version 1, padding),
    then e_type and e_machine in the file's byte order."""
    order: Literal["little", "big"] = "little" if data == LSB else "big"
    ident = b"\x7fELF" + bytes([elf_class, data, 1]) + bytes(9)
    return ident + e_type.to_bytes(2, order) + e_machine.to_bytes(2, order) + tail


@pytest.mark.parametrize(
    ("header", "arch"),
    [
        (elf(ELF64, LSB, ET_EXEC, 62), "x86_64"),
        (elf(ELF64, LSB, ET_DYN, 62), "x86_64"),  # a position-independent executable
        (elf(ELF64, LSB, ET_EXEC, 183), "aarch64"),
        (elf(ELF64, MSB, ET_EXEC, 183), "aarch64_be"),
        (elf(ELF32, LSB, ET_EXEC, 40), "arm"),
        (elf(ELF32, LSB, ET_EXEC, 3), "i386"),
        (elf(ELF64, LSB, ET_EXEC, 243), "riscv64"),
        (elf(ELF64, LSB, ET_EXEC, 21), "ppc64le"),
        (elf(ELF64, MSB, ET_EXEC, 21), "ppc64"),
        (elf(ELF64, MSB, ET_EXEC, 22), "s390x"),
        (elf(ELF64, LSB, ET_EXEC, 258), "loongarch64"),
        (elf(ELF32, LSB, ET_EXEC, 62), "x32"),
        (elf(ELF64, LSB, ET_EXEC, 0x1234), "ELF machine 4660"),
        (elf(ELF64, LSB, ET_EXEC, 62, tail=bytes(100)), "x86_64"),  # more than the header
        (elf(ELF64, LSB, ET_REL, 62), NOT_ELF),  # an object file
        (elf(ELF64, LSB, ET_CORE, 62), NOT_ELF),
        (elf(3, LSB, ET_EXEC, 62), NOT_ELF),  # no such class
        (elf(ELF64, 3, ET_EXEC, 62), NOT_ELF),  # no such byte order
        (elf(ELF64, LSB, ET_EXEC, 62)[: HEADER_SIZE - 1], NOT_ELF),  # cut short
        (b"", NOT_ELF),
        (b"MZ\x90\x00" + bytes(60), NOT_ELF),
        (b"nats-server: v2.15.1\n" + bytes(40), NOT_ELF),
        (b'#!/bin/sh\nexec /opt/nats-server "$@"\n', SCRIPT),
        (b"#!", SCRIPT),
    ],
)
def test_the_header_says_which_cpu(header: bytes, arch: str) -> None:
    assert binary_arch(header) == arch


@pytest.mark.parametrize(
    ("platform", "arch"),
    [
        ("linux-x86_64", "x86_64"),
        ("linux-amd64", "x86_64"),
        ("linux-aarch64", "aarch64"),
        ("linux-arm64", "aarch64"),
        ("linux-armv7l", "arm"),
        ("linux-armv6l", "arm"),
        ("linux-i686", "i386"),
        ("linux-riscv64", "riscv64"),
        ("linux-ppc64le", "ppc64le"),
        ("linux-s390x", "s390x"),
        ("darwin-arm64", None),
        ("None", None),  # no platform reported
        ("linux-", None),
        ("linux-\x1b[2Jarm", None),  # nothing odd from the host is taken, or shown
    ],
)
def test_the_host_platform_says_which_cpu(platform: str, arch: str | None) -> None:
    assert host_arch(platform) == arch


@pytest.mark.parametrize(
    ("arch", "platform", "why"),
    [
        ("x86_64", "linux-x86_64", None),
        ("aarch64", "linux-aarch64", None),
        ("aarch64", "linux-arm64", None),
        ("arm", "linux-armv7l", None),
        ("i386", "linux-i686", None),
        (SCRIPT, "linux-aarch64", None),  # the host's own interpreter runs it
        ("x86_64", "linux-aarch64", "it is built for x86_64, and the host is aarch64"),
        ("aarch64", "linux-x86_64", "it is built for aarch64, and the host is x86_64"),
        ("i386", "linux-x86_64", "it is built for i386, and the host is x86_64"),
        ("arm", "linux-aarch64", "it is built for arm, and the host is aarch64"),
        (
            "ELF machine 4660",
            "linux-x86_64",
            "it is built for ELF machine 4660, and the host is x86_64",
        ),
        (NOT_ELF, "linux-x86_64", "it is not an ELF executable, which no host can run"),
        ("x86_64", "darwin-x86_64", "the host did not report a Linux platform fleetctl can read"),
        ("x86_64", "None", "the host did not report a Linux platform fleetctl can read"),
    ],
)
def test_a_binary_runs_only_on_a_host_of_its_cpu(arch: str, platform: str, why: str | None) -> None:
    assert unfit(arch, platform) == why


def test_the_nats_server_the_lock_installs_is_for_this_machine() -> None:
    if not REAL.is_file():
        pytest.skip(f"no nats-server beside {sys.executable}: run ./dev setup")
    with REAL.open("rb") as f:
        arch = binary_arch(f.read(HEADER_SIZE))
    here = f"linux-{os.uname().machine}"
    assert arch == host_arch(here)
    assert unfit(arch, here) is None
    other = "linux-aarch64" if arch == "x86_64" else "linux-x86_64"
    assert unfit(arch, other) == f"it is built for {arch}, and the host is {host_arch(other)}"
