"""`fleetctl [-f FLEET] [-s SERVERS] COMMAND`."""

from __future__ import annotations

import errno
import importlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from fleetctl import __version__
from fleetctl.artifacts.errors import ArtifactError
from fleetctl.cli.context import AppContext, fail
from fleetctl.cli.groups import SuggestingGroup
from fleetctl.errors import LocalFileError
from nsc.errors import NscError

# Each command's module, imported only when that command runs: `plan` need not load what
# `apply` shows (rich's progress display) or what `creds` uses, and `--help` stays quick.
COMMANDS = {
    "init": "fleetctl.cli.init",
    "validate": "fleetctl.cli.validate",
    "plan": "fleetctl.cli.plan",
    "apply": "fleetctl.cli.apply",
    "rollback": "fleetctl.cli.rollback",
    "decommission": "fleetctl.cli.decommission",
    "render": "fleetctl.cli.render",
    "schema": "fleetctl.cli.schema",
    "creds": "fleetctl.cli.creds",
    "wheelhouse": "fleetctl.cli.wheelhouse",
    "task": "fleetctl.cli.task",
    "results": "fleetctl.cli.results",
    "tasks": "fleetctl.cli.tasks",
    "dead": "fleetctl.cli.dead",
    "costs": "fleetctl.cli.costs",
    "status": "fleetctl.cli.status",
    "dashboard": "fleetctl.cli.dashboard",
    "logs": "fleetctl.cli.logs",
    "up": "fleetctl.cli.up",
    "down": "fleetctl.cli.up",
}


@contextmanager
def _errors_exit_1() -> Iterator[None]:
    """Every error exits 1, as one line on stderr, never a traceback.

    click exits 2 on a usage error, the code `plan --detailed-exitcode` gives "changes
    pending": a mistyped option in CI would read as changes."""
    try:
        yield
    except click.UsageError as exc:
        exc.exit_code = 1  # type: ignore[misc]  # click reads it from the instance
        raise
    except NscError as exc:
        fail(
            f"credential store: {exc}",
            exc.fix or "check the `creds:` paths in fleet.yaml, or restore a backup",
        )
    except LocalFileError as exc:
        fail(str(exc), exc.fix)
    except ArtifactError as exc:  # the poller's wheelhouse, an LLM CLI, the broker binary
        fail(str(exc))
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise  # click's own handling: the reader went away
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


class _LazyGroup(SuggestingGroup):
    """A group whose commands are imported by name when first asked for (click's own
    pattern for large CLIs); listing them for `--help` imports them all.

    Its own options are parsed in `make_context`; every subcommand's (nested groups'
    too) are parsed, and run, inside `invoke`: errors from both exit 1."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _errors_exit_1():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _errors_exit_1():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--fleet",
    "fleet_path",
    type=click.Path(path_type=Path),
    default="fleet.yaml",
    show_default=True,
    envvar="FLEETCTL_FLEET",
    help="The workers file.",
)
@click.option(
    "-s",
    "--servers",
    "servers_path",
    type=click.Path(path_type=Path),
    default="servers.yaml",
    show_default=True,
    envvar="FLEETCTL_SERVERS",
    help="The hosts file.",
)
@click.version_option(__version__, prog_name="fleetctl")
@click.pass_context
def cli(ctx: click.Context, fleet_path: Path, servers_path: Path) -> None:
    """Provision and run a fleet of LLM coding agents from fleet.yaml and servers.yaml."""
    given = ctx.get_parameter_source("servers_path") is not ParameterSource.DEFAULT
    ctx.obj = AppContext(fleet_path, servers_path, servers_given=given)


def main() -> None:
    try:
        cli(prog_name="fleetctl")
    except SystemExit as e:
        if _after_ctrl_c(e):
            # A bus call the Ctrl-C stopped before it began never ran, as Ctrl-C asks; its
            # coroutine, collected at exit, would print "coroutine ... was never awaited".
            warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        raise


def _after_ctrl_c(ended: SystemExit) -> bool:
    """Ended by a Ctrl-C: exit 130 (a command's own handling) or a KeyboardInterrupt behind
    the exit (click's "Aborted!")."""
    if ended.code == 130:
        return True
    seen: BaseException | None = ended
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
