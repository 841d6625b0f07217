"""Command groups that suggest what was meant: `fleetctl taks` names `task` and `tasks`, as
click already does for a mistyped option."""

from __future__ import annotations

import difflib

import click


class SuggestingGroup(click.Group):
    """A group whose unknown command gets a did-you-mean from its own commands."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            name = args[0] if args else ""
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            if not close or name.startswith("-"):
                raise
            quoted = [repr(c) for c in close]
            said = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
            raise click.UsageError(f"No such command {name!r}. Did you mean {said}?", ctx) from None
