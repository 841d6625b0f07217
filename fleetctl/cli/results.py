"""`fleetctl results TASK_ID`: each target's result of a task, side by side, from its record."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from fleetctl.cli.bus import task_client
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import bus_options, json_option, watch_option
from fleetctl.cli.waiting import show, stopped_waiting
from fleetctl.tasks import changes
from fleetctl.tasks.client import Answers, Client, NoSuchTask
from fleetctl.tasks.messages import Result, TaskError, check_task_id
from fleetctl.tasks.reach import BusOptions
from fleetctl.tasks.record import Sent
from fleetctl.ui.terminal import err, out

WATCH_EVERY = 0.5


def _answers(client: Client, task_id: str) -> Answers:
    try:
        return client.answers(task_id)
    except NoSuchTask as e:
        fail(str(e))


@click.command()
@click.argument("task_id")
@click.argument("workers", nargs=-1, metavar="[A B]")
@watch_option
@click.option("--full", is_flag=True, help="Whole outputs, not their first lines.")
@click.option(
    "--diff",
    "outputs_diff",
    is_flag=True,
    help="Each worker's patch, coloured (for a task without code: how the outputs differ); "
    "with two workers A B, their changes compared (with --to DIR: the files they leave).",
)
@click.option("--patch", "patch_of", metavar="WORKER", help="Print WORKER's patch, for git apply.")
@click.option(
    "--apply",
    "apply_of",
    metavar="WORKER",
    help="Apply WORKER's change to a local checkout (--to, default .) at the change's base.",
)
@click.option(
    "--to",
    "to_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --apply: the checkout. With --diff A B: a checkout that has the base, to "
    "compare the files A and B leave rather than their patches.",
)
@json_option
@bus_options
@pass_app
def results(
    app: AppContext,
    task_id: str,
    workers: tuple[str, ...],
    watch: bool,
    full: bool,
    outputs_diff: bool,
    patch_of: str | None,
    apply_of: str | None,
    to_dir: Path | None,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """Each target's result of TASK_ID (status, model, host, attempt, duration, tokens,
    cost, exit code and output, and for a task on a repository its diffstat, check and
    branch; one column per worker), from the task's record; an answer from a worker the task
    was not sent to is marked unsolicited. Exit 1 for an unknown id.

    --watch: each target's state as it changes, as `task send --wait` shows it, then the
    results; it exits as --wait does (0 only when every target completed). Ctrl-C stops
    the watching, not the task (exit 130)."""
    try:
        check_task_id(task_id)
    except TaskError as e:
        fail(str(e))
    _check_views(workers, outputs_diff, patch_of, apply_of, to_dir, as_json, watch)
    with task_client(app, bus) as client:
        answers = _answers(client, task_id)
        if watch:
            try:
                answers = _watch(client, answers, quiet=as_json)
            except KeyboardInterrupt:
                stopped_waiting(app, task_id)
    found = answers.results
    if patch_of is not None or apply_of is not None or (outputs_diff and workers):
        _change_views(app, found, workers, patch_of, apply_of, to_dir)
        return
    if as_json:
        click.echo(json.dumps(answers.as_json(), indent=2))
        return
    if answers.note is not None:
        err().print(
            f"note: {task_id}: {answers.note}. Every stored answer is shown; none can be "
            "checked against the task's targets.",
            markup=False,
        )
    if outputs_diff:
        from fleetctl.ui.results_view import diff, patches

        if any(isinstance(r.body.get("code"), dict) for r in found):
            patches(out(), found)
        else:
            diff(out(), found)
    else:
        show(task_id, found, as_json=False, full=full)
    if watch:
        _exit_as_wait_does(found)


def _exit_as_wait_does(found: list[Result]) -> None:
    """`--watch` ends as `task send --wait` does: 0 only when every target completed (an
    unsolicited answer is not a target)."""
    targets = [r for r in found if r.unsolicited is not True]
    sys.exit(0 if targets and all(r.ok for r in targets) else 1)


def _watch(client: Client, answers: Answers, *, quiet: bool) -> Answers:
    """Until every target has a result (or was dead-lettered, or is lost), each target's
    state as it changes, as `task send --wait` shows it; then the task's answers again."""
    from fleetctl.ui.results_view import Progress

    task_id = answers.task_id
    with Progress(err(), enabled=not quiet) as progress:
        progress.update(answers.results)
        if answers.record is not None:  # follow its targets, as --wait follows a send
            sent = Sent(task_id, answers.record.targets)
            client.wait(sent, None, progress.update)
            return _answers(client, task_id)
        client.follow_activity()  # what a running target does, as --wait shows it
        while any(not r.final for r in answers.results):  # no record: look again and again
            time.sleep(WATCH_EVERY)
            answers = _answers(client, task_id)
            progress.update(answers.results)
    return answers


def _check_views(
    workers: tuple[str, ...],
    outputs_diff: bool,
    patch_of: str | None,
    apply_of: str | None,
    to_dir: Path | None,
    as_json: bool,
    watch: bool,
) -> None:
    """One view at a time, each with only the arguments it takes."""
    views = [
        n
        for n, on in (("--diff", outputs_diff), ("--patch", patch_of), ("--apply", apply_of))
        if on
    ]
    if len(views) > 1:
        fail(f"{' and '.join(views)} are different views: give one")
    if workers and not (outputs_diff and len(workers) == 2):
        fail("workers after the task id compare two changes: results TASK --diff A B")
    if to_dir is not None and apply_of is None and not workers:
        fail("--to goes with --apply WORKER or --diff A B")
    if views and (as_json or watch) and not (outputs_diff and not workers):
        fail(f"{views[0]} does not go with --json or --watch")


def _change_views(
    app: AppContext,
    found: list[Result],
    workers: tuple[str, ...],
    patch_of: str | None,
    apply_of: str | None,
    to_dir: Path | None,
) -> None:
    """--patch WORKER, --apply WORKER, --diff A B."""
    try:
        if workers:
            a, b = (changes.of(found, w) for w in workers)
            from fleetctl.ui.results_view import compared

            if to_dir is not None:
                lines = changes.compare_in(a, b, to_dir)
            else:
                lines = changes.compare(a, b)
            compared(out(), a.worker_id, b.worker_id, lines)
            return
        worker = patch_of or apply_of
        assert worker is not None
        change = changes.of(found, worker)
        url = _url(app, change)
        if patch_of is not None:
            sys.stdout.buffer.write(changes.whole_patch(change, url))
            sys.stdout.buffer.flush()
            return
        to = to_dir or Path.cwd()
        changes.apply(change, to, url)
    except changes.ChangeError as e:
        fail(str(e), e.fix)
    n = len(change.code.get("files") or [])
    err().print(
        f"applied {worker}'s change ({n} file{'' if n == 1 else 's'}) to {to}: staged, "
        "not committed",
        markup=False,
    )


def _url(app: AppContext, change: changes.Change) -> str | None:
    repo = app.fleet().repos.get(str(change.code.get("repo")))
    return repo.url if repo is not None else None
