"""Every command `fleetctl --help` lists, subcommands included, found on the CLI itself."""

from __future__ import annotations

from collections.abc import Iterator

import click

from fleetctl.cli.main import cli


def _walk(
    group: click.Group, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group, info_name=path[-1] if path else "fleetctl")
    for name in group.list_commands(ctx):  # what `--help` lists
        command = group.get_command(ctx, name)
        assert command is not None, f"`fleetctl {' '.join(path)} --help` lists {name!r}"
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))


def all_commands() -> dict[tuple[str, ...], click.Command]:
    """(name, subname, ...) -> command, in `--help` order; groups included."""
    return dict(_walk(cli, ()))
