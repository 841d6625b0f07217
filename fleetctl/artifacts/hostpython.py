"""A host's python3 as the wheelhouse must fit it: which wheels it can load, and whether the
poller runs on it at all.

Pure: the host's agent reports the Python version, platform and libc (`Target`); this says
which `pip download --platform` tags those allow, or why no wheel can fit that host, before
anything is downloaded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from fleetctl.artifacts.errors import ArtifactError

_MANYLINUX_BASE = 17  # manylinux2014 == manylinux_2_17: the oldest glibc worth supporting


@dataclass(frozen=True)
class Target:
    """What a host reported about its python3: the wheels must fit exactly this interpreter."""

    python: str  # "3.11"
    platform: str  # sysconfig.get_platform(), e.g. "linux-x86_64"
    libc: str  # "-".join(platform.libc_ver()), e.g. "glibc-2.36"; "-" if unknown

    @property
    def key(self) -> str:
        """A cache directory name; odd or hostile host reports get a hash so they can't collide."""
        raw = f"py{self.python}_{self.platform}_{self.libc}"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", raw)
        if safe == raw and "_" not in self.python + self.libc:  # then "_" splits it unambiguously
            return raw
        return f"{safe[:60]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def baseline(python: str, platform: str) -> Target:
    """A host type known only by Python and platform: manylinux2014 wheels, any glibc."""
    return Target(python, platform, "-")


def _arch(target: Target) -> str:
    system, _, arch = target.platform.partition("-")
    if system != "linux" or not arch:
        raise ArtifactError(
            f"host platform {target.platform!r} is not Linux: the poller deploys to Linux only"
        )
    return re.sub(r"[^A-Za-z0-9]+", "_", arch)


def platform_tags(target: Target) -> tuple[str, ...]:
    """The `pip download --platform` tags the host can load, most preferred first.

    An unknown libc ("-") gets the manylinux2014 baseline, which every glibc >= 2.17 accepts.
    """
    arch = _arch(target)
    family, _, version = target.libc.partition("-")
    found = re.match(r"(\d+)\.(\d+)", version)
    if family == "musl":
        if not found:
            raise ArtifactError(f"host reported musl without a version ({target.libc!r})")
        minor = int(found.group(2))
        return tuple(f"musllinux_1_{m}_{arch}" for m in range(max(minor, 1), 0, -1))
    if family == "glibc" and found:
        major, minor = int(found.group(1)), int(found.group(2))
        if major != 2 or minor < _MANYLINUX_BASE:
            raise ArtifactError(
                f"host glibc {version} is older than 2.{_MANYLINUX_BASE}: "
                "no prebuilt wheels exist for it; upgrade the host OS"
            )
    elif family in ("", "glibc"):
        minor = _MANYLINUX_BASE
    else:
        raise ArtifactError(f"host libc {target.libc!r} is neither glibc nor musl")
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, _MANYLINUX_BASE - 1, -1)]
    return (*tags, f"manylinux2014_{arch}")


def check_python(target: Target, requires_python: str | None) -> None:
    """Fail before downloading when the host python is one the poller cannot run on
    (`requires_python`: the poller's `Requires-Python`, `>=3.X`)."""
    if not re.fullmatch(r"3\.\d+", target.python):
        raise ArtifactError(f"host python {target.python!r} is not a 3.X version")
    needed = re.fullmatch(r"\s*>=\s*3\.(\d+)\s*", requires_python or "")
    if needed and int(target.python.split(".")[1]) < int(needed.group(1)):
        raise ArtifactError(
            f"host python {target.python} is too old: the poller needs Python "
            f">=3.{needed.group(1)}; install a newer python3 on the host"
        )
