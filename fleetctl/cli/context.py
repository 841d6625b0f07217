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
from fleetctl.config.thismachine import servers_or_local
from fleetctl.ui.problems import print_problems
from fleetctl.ui.terminal import err


@dataclass
class AppContext:
    fleet_path: Path
    servers_path: Path
    servers_given: bool = True  # -s or FLEETCTL_SERVERS: never replaced by the built-in one
    _fleet: Fleet | None = field(default=None, repr=False)

    def servers(self, local: bool = False) -> Path:
        """servers.yaml; for a command that works on a local fleet (`local`), the built-in
        inventory of this machine when there is none here and none was named."""
        if local and not self.servers_given:
            return servers_or_local(self.servers_path)
        return self.servers_path

    def fleet(self, local: bool = False) -> Fleet:
        """The validated fleet; on bad input print every problem and exit 1. `local`: the
        command works on a local fleet, which needs no servers.yaml."""
        if self._fleet is None:
            try:
                self._fleet = load_fleet(self.fleet_path, self.servers(local))
            except ConfigError as exc:
                print_problems(exc.problems)
                if not local and not self.servers_given and not self.servers_path.exists():
                    err().print(
                        "note: a fleet without a servers.yaml runs on this machine only "
                        "(fleetctl up, and the task commands); this command needs your servers",
                        markup=False,
                    )
                sys.exit(1)
        return self._fleet


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str, fix: str = "") -> NoReturn:
    """A usage or input error: one clear line on stderr, exit 1, no traceback."""
    err().print(f"error: {message}" + (f" ({fix})" if fix else ""), markup=False)
    sys.exit(1)
