"""Every environment variable fleetctl reads is documented in the README: the ones its
options declare (found on the commands themselves) and any `FLEETCTL_*` name in the code."""

from __future__ import annotations

import re
from pathlib import Path

import click

from fleetctl.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def _declared(command: click.Command) -> set[str]:
    names = {
        name
        for param in command.params
        for name in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    }
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for sub in command.list_commands(ctx):
            found = command.get_command(ctx, sub)
            assert found is not None
            names |= _declared(found)
    return names


def test_every_fleetctl_variable_is_documented() -> None:
    declared = _declared(cli)
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
