"""Which CPU a binary is built for, from its ELF header, and whether a host can run it.

Pure: the caller reads the first `HEADER_SIZE` bytes of the file and gets the host's
platform from its agent (`linux-x86_64`, `linux-aarch64`: fleetctl/hostside/agent.py). A
binary for another CPU installs fine and then fails at its first start with "Exec format
error", after the old one was stopped; this is how apply knows before it touches the host.
"""

from __future__ import annotations

import re
from typing import Literal

HEADER_SIZE = 20  # e_ident (16), e_type (2), e_machine (2)
NOT_ELF = "not an ELF executable"
SCRIPT = "a script"
"""`#!...`: its interpreter is the host's own, so it is not bound to a CPU."""

_EXECUTABLE_TYPES = (2, 3)  # ET_EXEC, ET_DYN (position-independent executables)

# e_machine -> the name `uname -m` gives that CPU, by (64-bit, little-endian) where the
# same e_machine covers several.
_MACHINES: dict[int, dict[tuple[bool, bool], str] | str] = {
    3: "i386",
    8: {(False, False): "mips", (False, True): "mipsel", (True, False): "mips64"}
    | {(True, True): "mips64el"},
    20: "ppc",
    21: {(True, False): "ppc64", (True, True): "ppc64le"},
    22: {(False, False): "s390", (True, False): "s390x"},
    40: {(False, True): "arm", (False, False): "armeb"},
    62: {(True, True): "x86_64", (False, True): "x32"},
    183: {(True, True): "aarch64", (True, False): "aarch64_be"},
    243: {(True, True): "riscv64", (False, True): "riscv32"},
    258: "loongarch64",
}

# `uname -m` spellings of one CPU, as the ELF names above spell it.
_HOST_ALIASES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
}


def binary_arch(header: bytes) -> str:
    """The CPU an executable's first bytes say it is for (`x86_64`, `aarch64`, ...), `SCRIPT`
    for a `#!` script, `NOT_ELF` for anything else (an ELF object that is not an
    executable included); an unknown CPU as `ELF machine <number>`."""
    if header.startswith(b"#!"):
        return SCRIPT
    if len(header) < HEADER_SIZE or not header.startswith(b"\x7fELF"):
        return NOT_ELF
    elf_class, data = header[4], header[5]
    if elf_class not in (1, 2) or data not in (1, 2):
        return NOT_ELF
    order: Literal["little", "big"] = "little" if data == 1 else "big"
    e_type = int.from_bytes(header[16:18], order)
    e_machine = int.from_bytes(header[18:20], order)
    if e_type not in _EXECUTABLE_TYPES:
        return NOT_ELF
    named = _MACHINES.get(e_machine)
    if isinstance(named, dict):
        named = named.get((elf_class == 2, data == 1))
    return named or f"ELF machine {e_machine}"


def host_arch(platform: str) -> str | None:
    """The CPU of a host that reported `linux-<machine>`, spelled as `binary_arch` spells
    it; None for a platform that is not Linux or a machine name that is not plain."""
    system, _, machine = platform.partition("-")
    if system != "linux" or not re.fullmatch(r"[A-Za-z0-9_]+", machine):
        return None
    if re.fullmatch(r"armv\d+[a-z]*", machine):  # armv7l, armv6l: 32-bit ARM
        return "arm"
    return _HOST_ALIASES.get(machine, machine)


def unfit(arch: str, platform: str) -> str | None:
    """Why a binary for `arch` (`binary_arch`) cannot run on a host that reported
    `platform`, or None when it can. The CPUs must be the same: a 64-bit host's kernel may
    lack the 32-bit compatibility a 32-bit binary needs."""
    host = host_arch(platform)
    if host is None:
        return "the host did not report a Linux platform fleetctl can read"
    if arch in (SCRIPT, host):
        return None
    if arch == NOT_ELF:
        return f"it is {NOT_ELF}, which no host can run"
    return f"it is built for {arch}, and the host is {host}"
