"""A unit's seccomp-based sandboxing, applied by hand in front of a program.

This machine has no systemd as PID 1 and the simulated hosts' systemctl ignores sandboxing,
so the settings a program could break on at random are loaded here as systemd loads them: a
seccomp filter with the unit's `SystemCallFilter=` lines (expanded with `systemd-analyze
syscall-filter`; calls outside fail with the unit's `SystemCallErrorNumber=`, EPERM),
`RestrictNamespaces=yes` (no namespace flags to clone/unshare, no setns, clone3 answers
ENOSYS) and `MemoryDenyWriteExecute=yes` (no mapping both writable and executable, no mprotect to
executable). Needs
libseccomp's bindings for the system python3 (python3-seccomp, which ./dev installs).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
LAUNCHER = """\
import errno, json, os, sys
import seccomp
spec = json.loads(os.environ.pop("UNIT_FILTER"))
allowed = set(spec["allow"])
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
conditional = {}
if spec["no_namespaces"]:
    ns = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
    conditional.update({"clone": (0, ns, [0]), "unshare": (0, ns, [0])})
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    allowed -= {"setns", "clone3"}
if spec["no_wx"]:
    # as systemd: mmap may not map writable and executable at once; mprotect may not make
    # anything executable
    conditional["mmap"] = (2, 0x2 | 0x4, [0, 0x2, 0x4])
    conditional["mprotect"] = (2, 0x4, [0])
    conditional["pkey_mprotect"] = (2, 0x4, [0])
for name, (arg, mask, values) in conditional.items():
    if name in allowed:
        for value in values:
            f.add_rule(seccomp.ALLOW, name, seccomp.Arg(arg, seccomp.MASKED_EQ, mask, value))
    allowed.discard(name)
for name in sorted(allowed):
    try:
        f.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError):
        pass  # not a call of this architecture
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"""


def skip_reason() -> str | None:
    if shutil.which("systemd-analyze") is None:
        return "needs systemd-analyze (apt-get install systemd)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    if probe.returncode != 0:
        return "needs python3-seccomp for /usr/bin/python3 (./dev test as root installs it)"
    return None


@functools.cache
def _groups() -> dict[str, tuple[str, ...]]:
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.split()[0])
    return {k: tuple(v) for k, v in groups.items()}


def _expand(names: list[str]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= _expand(list(_groups()[name])) if name.startswith("@") else {name}
    return out


def spec(unit: str) -> dict[str, object]:
    """The filter a unit's text asks for: the first `SystemCallFilter=` line allows, each `~`
    line after it takes away (as systemd combines them)."""
    lines = unit.splitlines()
    filters = [line.split("=", 1)[1] for line in lines if line.startswith("SystemCallFilter=")]
    assert filters and not filters[0].startswith("~"), "an allow list comes first"
    assert "SystemCallErrorNumber=EPERM" in lines
    allowed = _expand(filters[0].split())
    for deny in filters[1:]:
        assert deny.startswith("~")
        allowed -= _expand(deny[1:].split())
    return {
        "allow": sorted(allowed),
        "no_namespaces": "RestrictNamespaces=yes" in lines,
        "no_wx": "MemoryDenyWriteExecute=yes" in lines,
    }


def wrap(directory: Path, unit: str, program: str | Path) -> Path:
    """An executable that runs `program` (with its arguments) under the unit's filter."""
    directory.mkdir(parents=True, exist_ok=True)
    launcher = directory / "unit_filter_launcher.py"
    launcher.write_text(LAUNCHER)
    name = Path(program).name
    wrapper = directory / f"{name}-under-unit-filter"
    wrapper.write_text(
        f"#!/bin/sh\nUNIT_FILTER='{json.dumps(spec(unit))}' "
        f'exec {SYSTEM_PYTHON} {launcher} {program} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def unit_text(unit_suffix: str) -> str:
    """A rendered unit of the example fleet, by the end of its path."""
    from fleetctl.reconcile.desired.build import desired_state
    from tests.support.example import example_fleet

    for state in desired_state(example_fleet()).hosts.values():
        for f in state.files:
            if f.path.endswith(unit_suffix):
                return f.content.decode()
    raise KeyError(unit_suffix)
