"""An option several commands share is defined once (fleetctl/cli/options.py): wherever the
same flag means the same thing (same destination, type, arity and required) it has the same help."""

from __future__ import annotations

from collections import defaultdict

import click

from fleetctl.cli.main import cli
from tests.support.commands import all_commands


def test_a_shared_option_has_one_definition() -> None:
    helps: dict[tuple[object, ...], dict[str | None, list[str]]] = defaultdict(dict)
    for path, command in [((), cli), *all_commands().items()]:
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            kind = (repr(param.type), param.multiple, param.is_flag, param.required)
            same = (tuple(param.opts), param.name, *kind)
            helps[same].setdefault(param.help, []).append(" ".join(path) or "fleetctl")
    drifted = {same[0]: variants for same, variants in helps.items() if len(variants) > 1}
    assert not drifted, f"define these once in fleetctl/cli/options.py: {drifted}"
