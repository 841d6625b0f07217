"""`fleetctl render --out DIR`: the files each host would get, for review in a PR."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.reconcile.desired.build import desired_state
from fleetctl.reconcile.inputs import gather
from fleetctl.ui.terminal import out

MARKER = ".fleetctl-render"


@click.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write, one subdirectory per host (replaced on each run).",
)
@pass_app
def render(app: AppContext, out_dir: Path) -> None:
    """Write every non-secret file of the fleet under DIR/<host>/<path>."""
    fleet = app.fleet()
    inputs = gather(fleet)  # before touching DIR: a broken store fails first
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        fail(
            f"{out_dir} is not empty and was not written by fleetctl render",
            "choose an empty or new directory",
        )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / MARKER).write_text("Written by `fleetctl render`; replaced on every run.\n")
    written = skipped = waiting = 0
    desired = desired_state(fleet, inputs)  # the same files `plan` shows
    for host, state in desired.hosts.items():
        for spec in state.files:
            if spec.sensitive:
                skipped += 1
                continue
            if spec.generated:
                waiting += 1
                continue
            target = out_dir / host / spec.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(spec.content)
            written += 1
    notes = [f"{skipped} sensitive files not written"] if skipped else []
    if waiting:
        notes.append(f"{waiting} waiting for keys or certificates that apply generates")
    note = f" ({'; '.join(notes)})" if notes else ""
    out().print(
        f"Wrote {written} files for {len(fleet.hosts)} hosts to {out_dir}{note}", markup=False
    )
