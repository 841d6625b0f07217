"""Every environment variable fleetctl reads is documented in the README: the ones its
options declare (found on the commands themselves) and any `FLEETCTL_*` name in the code."""

from __future__ import annotations

import re
from pathlib import Path

from fleetctl.cli.main import cli
from tests.support.commands import all_commands

REPO = Path(__file__).resolve().parents[3]


def test_every_fleetctl_variable_is_documented() -> None:
    declared = {
        name
        for command in [cli, *all_commands().values()]
        for param in command.params
        for name in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    }
    assert declared, "no option declares an environment variable any more?"
    in_code = {
        name
        for path in (REPO / "fleetctl").rglob("*.py")
        for name in re.findall(r"FLEETCTL_[A-Z_]+", path.read_text())
    }
    readme = REPO.joinpath("README.md").read_text()
    documented = set(re.findall(r"^\| `(FLEETCTL_[A-Z_]+)` \|", readme, re.MULTILINE))
    used = declared | in_code
    assert used <= documented, f"document in README.md: {sorted(used - documented)}"
    assert documented <= used, f"README.md documents unused {sorted(documented - used)}"
