"""`fleetctl task send`: publish a task to one worker, several, a selection or a route
(`task cancel`: fleetctl/cli/cancel.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fleetctl.cli.bus import task_client
from fleetctl.cli.cancel import cancel
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.groups import SuggestingGroup
from fleetctl.cli.options import bus_options, json_option, to_option
from fleetctl.cli.params import duration
from fleetctl.cli.running import describe, not_running
from fleetctl.cli.waiting import follow, show, stopped_waiting
from fleetctl.tasks import code, targets
from fleetctl.tasks.messages import TaskError, check_task_id
from fleetctl.tasks.reach import BusOptions
from fleetctl.ui.terminal import err, out


@click.group(cls=SuggestingGroup)
def task() -> None:
    """Send tasks to the fleet's workers, or cancel them."""


task.add_command(cancel)


def _prompt(text: str | None, file: str | None) -> str:
    if text is not None and file is not None:
        fail("give the prompt as TEXT or with --file, not both")
    if file == "-":
        return sys.stdin.read()
    if file is not None:
        try:
            return Path(file).read_text()
        except UnicodeDecodeError:
            fail(f"--file {file}: not UTF-8 text")
    if text is None:
        fail("no prompt: give TEXT, --file PATH or --file - (stdin)")
    return text


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    try:
        return targets.parse_pairs(values, option)
    except targets.TargetError as e:
        fail("; ".join(e.problems))


@task.command()
@click.argument("text", required=False)
@to_option
@click.option(
    "--select",
    "select",
    multiple=True,
    metavar="KEY=VALUE",
    help="Workers whose label or field (lang, role, llm, model, host) matches; all must.",
)
@click.option("--route", metavar="NAME", help="A route from fleet.yaml `routes:`.")
@click.option("--any", "any_", is_flag=True, help="Only the least loaded of the targets.")
@click.option("--file", "file", metavar="PATH|-", help="Read the prompt from a file or stdin.")
@click.option("--id", "task_id", metavar="TASK_ID", help="The task id (default: a new one).")
@click.option("--timeout", metavar="DURATION", help="Longest the task may run, e.g. 10m.")
@click.option("--type", "task_type", metavar="TYPE", help="task_type, copied into results.")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="metadata (repeatable).")
@click.option(
    "--repo",
    metavar="NAME",
    help="The repository (fleet.yaml repos:) the task works on; default: the targets' `repo:`.",
)
@click.option(
    "--ref",
    metavar="REF",
    help="Branch, tag or commit to start from (default: the repository's ref), resolved once "
    "here so every target starts from the same commit.",
)
@click.option("--wait", is_flag=True, help="Follow the targets, then show the results.")
@click.option("--wait-timeout", metavar="DURATION", help="With --wait: give up after this long.")
@click.option(
    "--require-running",
    is_flag=True,
    help="Send nothing unless every target is running (otherwise: a warning, and it waits).",
)
@json_option
@bus_options
@pass_app
def send(
    app: AppContext,
    text: str | None,
    to: tuple[str, ...],
    select: tuple[str, ...],
    route: str | None,
    any_: bool,
    file: str | None,
    task_id: str | None,
    timeout: str | None,
    task_type: str | None,
    meta: tuple[str, ...],
    repo: str | None,
    ref: str | None,
    wait: bool,
    wait_timeout: str | None,
    require_running: bool,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """Send TEXT (or --file) to the chosen workers: one copy each, each run once.

    Exit 0 when sent (with --wait: when every target completed), 1 otherwise."""
    prompt = _prompt(text, file)
    if task_id is not None:
        try:  # before reaching the bus, like a wrong target
            check_task_id(task_id)
        except TaskError as e:
            fail(f"--id: {e}", "nothing was sent")
    chosen = _pairs(select, "--select")
    metadata = _pairs(meta, "--meta")
    seconds = duration(timeout, "--timeout")
    wait_for = duration(wait_timeout, "--wait-timeout")
    fleet = app.fleet(local=True)
    ask = targets.Ask(to, chosen or None, route, any_)
    try:  # before reaching the bus: a wrong target needs no connection to be refused
        groups = targets.candidates(fleet, ask)
        code.choose(fleet, targets.resolve(fleet, ask), repo, ref)
    except targets.TargetError as e:
        for problem in e.problems:
            err().print(f"error: {problem}", markup=False)
        fail("nothing was sent")
    except code.CodeError as e:
        fail(str(e), "nothing was sent")
    with task_client(app, bus) as client:
        down = not_running(app, bus, client, [w for g in groups for w in g])
        if require_running:
            _require_running(groups, down)
        try:
            sent = client.send(
                prompt,
                to=to,
                select=chosen or None,
                route=route,
                any=any_,
                task_id=task_id,
                timeout=seconds,
                task_type=task_type,
                metadata=metadata or None,
                repo=repo,
                ref=ref,
            )
        except code.CodeError as e:
            fail(str(e), "nothing was sent")
        if sent.record_error is not None:
            err().print(
                f"warning: {sent.task_id} was sent but not recorded ({sent.record_error}): "
                "`fleetctl results` cannot check its answers against its targets",
                markup=False,
            )
        for t in sent.targets:
            if down and t.workers and all(w in down for w in t.workers):
                err().print(
                    f"warning: {describe(t.workers, down)}; {sent.task_id} waits in its "
                    "queue until it runs",
                    markup=False,
                )
            if t.duplicate:
                err().print(
                    f"{t.key}: {sent.task_id} was already sent to it "
                    "(within the duplicate window): it runs once",
                    markup=False,
                )
        if not wait:
            if as_json:
                click.echo(json.dumps(sent.as_json(), indent=2))
            else:
                for t in sent.targets:
                    out().print(f"sent {sent.task_id} to {t.key}", markup=False)
            return
        try:
            results = follow(client, sent, wait_for, quiet=as_json)
        except KeyboardInterrupt:
            stopped_waiting(app, sent.task_id)
    show(sent.task_id, results, as_json=as_json)
    sys.exit(0 if results and all(r.ok for r in results) else 1)


def _require_running(groups: list[tuple[str, ...]], down: dict[str, str] | None) -> None:
    """--require-running: every target running (for --any or a `pick: any` route, one of
    the workers that may take it), or nothing is sent."""
    if down is None:
        fail(
            "cannot tell which workers run: the publisher's credentials predate pings",
            "`fleetctl apply` issues new ones; nothing was sent",
        )
    stopped = [g for g in groups if all(w in down for w in g)]
    for group in stopped:
        err().print(f"error: {describe(group, down)}", markup=False)
    if stopped:
        fail(
            "nothing was sent",
            "start it, or send without --require-running",
        )
