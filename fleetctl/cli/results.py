"""`fleetctl results TASK_ID`: each target's result of a task, side by side, from its record."""

from __future__ import annotations

import json
import time

import click

from fleetctl.cli.bus import task_client
from fleetctl.cli.context import AppContext, fail, pass_app
from fleetctl.cli.options import bus_options, json_option, watch_option
from fleetctl.cli.task import show
from fleetctl.tasks.client import Answers, Client, NoSuchTask
from fleetctl.tasks.messages import TaskError, check_task_id, results_json
from fleetctl.tasks.reach import BusOptions
from fleetctl.ui.terminal import err, out

WATCH_EVERY = 0.5


def _answers(client: Client, task_id: str) -> Answers:
    try:
        return client.answers(task_id)
    except NoSuchTask as e:
        fail(str(e))


@click.command()
@click.argument("task_id")
@watch_option
@click.option("--full", is_flag=True, help="Whole outputs, not their first lines.")
@click.option("--diff", "outputs_diff", is_flag=True, help="How the workers' outputs differ.")
@json_option
@bus_options
@pass_app
def results(
    app: AppContext,
    task_id: str,
    watch: bool,
    full: bool,
    outputs_diff: bool,
    as_json: bool,
    bus: BusOptions,
) -> None:
    """Each target's result of TASK_ID (status, model, host, attempt, duration, tokens,
    cost, exit code and output, one column per worker), from the task's record; an answer
    from a worker the task was not sent to is marked unsolicited. Exit 1 for an unknown id."""
    try:
        check_task_id(task_id)
    except TaskError as e:
        fail(str(e))
    with task_client(app, bus) as client:
        answers = _answers(client, task_id)
        if watch:
            seen = {r.worker_id: r.status for r in answers.results}
            try:
                while any(not r.final for r in answers.results):
                    time.sleep(WATCH_EVERY)
                    answers = _answers(client, task_id)
                    for r in answers.results:
                        if seen.get(r.worker_id) != r.status:
                            seen[r.worker_id] = r.status
                            err().print(f"{r.worker_id}: {r.status}", markup=False)
            except KeyboardInterrupt:
                pass
    found = answers.results
    if as_json:
        record = answers.record.as_json() if answers.record is not None else None
        listed = results_json(task_id, found)
        body = {"version": listed["version"], "task_id": task_id, "record": record}
        body["results"] = listed["results"]
        click.echo(json.dumps(body, indent=2))
        return
    if answers.note is not None:
        err().print(
            f"note: {task_id}: {answers.note}. Every stored answer is shown; none can be "
            "checked against the task's targets.",
            markup=False,
        )
    if outputs_diff:
        from fleetctl.ui.results_view import diff

        diff(out(), found)
    else:
        show(task_id, found, as_json=False, full=full)
