"""What every command shares: where the two files are, and loading them once."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import click

from fleetctl.config.errors import ConfigError
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.ui.problems import print_problems
from fleetctl.ui.terminal import err


@dataclass
class AppContext:
    fleet_path: Path
    servers_path: Path
    _fleet: Fleet | None = field(default=None, repr=False)

    def fleet(self) -> Fleet:
        """The validated fleet; on bad input print every problem and exit 1."""
        if self._fleet is None:
            try:
                self._fleet = load_fleet(self.fleet_path, self.servers_path)
            except ConfigError as exc:
                print_problems(exc.problems)
                sys.exit(1)
        return self._fleet


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str, fix: str = "") -> NoReturn:
    """A usage or input error: one clear line on stderr, exit 1, no traceback."""
    err().print(f"error: {message}" + (f" ({fix})" if fix else ""), markup=False)
    sys.exit(1)
