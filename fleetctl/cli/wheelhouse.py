"""`fleetctl wheelhouse build --out DIR`: the hosts' dependency wheels, built where the
package index is reachable and brought to a control machine that cannot reach it."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import click

from fleetctl.artifacts import hostpython, wheelcache
from fleetctl.cli.context import fail
from fleetctl.cli.groups import SuggestingGroup


@click.group(cls=SuggestingGroup)
def wheelhouse() -> None:
    """The poller's offline install set."""


@wheelhouse.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write (added to: one set per host type and poller lock).",
)
@click.option("--python", "pythons", multiple=True, help="Host Python, X.Y; once per host type.")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="Host platform as `python3 -c 'import sysconfig; print(sysconfig.get_platform())'` "
    "prints it (linux-x86_64, linux-aarch64); one per --python.",
)
def build(out: Path, pythons: tuple[str, ...], platforms: tuple[str, ...]) -> None:
    """Download the hosts' dependency wheels (checked against the poller's lock) into DIR.

    Without --python/--platform: for this machine's Python and platform. The wheels are
    manylinux2014 ones, which every glibc >= 2.17 loads. Then, on the control machine:
    FLEETCTL_WHEELHOUSE=DIR fleetctl apply ...
    """
    if len(pythons) != len(platforms):
        fail(
            "give --python and --platform once each per host type",
            "e.g. --python 3.11 --platform linux-x86_64 --python 3.12 --platform linux-aarch64",
        )
    pairs = list(zip(pythons, platforms, strict=True)) or [_here()]
    for python, plat in pairs:
        target = hostpython.baseline(python, plat)
        files = wheelcache.export(target, out)
        click.echo(f"{target.key}: {len(files)} wheels in {files[0].parent}")
    brought = f"{wheelcache.BROUGHT_ENV}={out}"
    click.echo(f"Use it where the index is out of reach: {brought} fleetctl apply ...")


def _here() -> tuple[str, str]:
    return f"{sys.version_info[0]}.{sys.version_info[1]}", sysconfig.get_platform()
