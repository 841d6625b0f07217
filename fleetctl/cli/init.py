"""`fleetctl init [DIR]`: a commented fleet.yaml to start from, that `fleetctl up` runs here
with no servers.yaml (fleetctl/config/thismachine.py): two demo workers that need nothing
installed, and an example of each LLM backend, commented out."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from fleetctl.cli.context import fail
from fleetctl.cli.options import force_option
from fleetctl.render.engine import templates_dir
from fleetctl.ui.terminal import out

TEMPLATE = Path("init") / "fleet.yaml"


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@force_option
def init(directory: Path, force: bool) -> None:
    """Write DIRECTORY/fleet.yaml (default: here): two demo workers that run on any machine
    and a commented example of each LLM backend. With no servers.yaml beside it, `fleetctl
    up` runs it on this machine."""
    target = directory / "fleet.yaml"
    if target.exists() and not force:
        fail(f"{target} already exists: nothing was written", "--force replaces it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text((templates_dir() / TEMPLATE).read_text())
    except OSError as e:
        fail(f"cannot write {target}: {e.strerror or e}")
    go = "" if directory == Path() else f"cd {shlex.quote(str(directory))} && "
    out().print(
        f"Wrote {target}: two demo workers that run here, and an example of each LLM backend "
        "(commented out).\n"
        f"  {go}fleetctl up      # the local fleet, in the foreground; Ctrl-C stops it\n"
        '  fleetctl task send --to cmd-wordcount-01 --wait "Count the words of this"',
        markup=False,
        highlight=False,
    )
