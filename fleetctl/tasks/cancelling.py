"""Cancelling a task (`fleetctl task cancel`): a mark per (worker, task) in the cancels bucket
`<PREFIX>_CANCELS`, written by the publisher. The worker named in the key reads it before it
runs the task and sees it while it runs it (poller/cancel.py): a queued copy is dropped unrun
when its worker takes it, a running one has its CLI stopped; either way its result is
`cancelled`, stored by the worker itself and never retried.

The publisher may not delete a task from the task stream, and no worker may read another's
marks or any task record (docs/security.md): the mark is the one thing both sides share.
A copy still queued with a mark is shown as `cancelled` at once (it will not run); its worker
removes it from its queue when it next takes a task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleetctl.tasks import messages as taskmsg
from fleetctl.tasks import record as taskrecord
from fleetctl.tasks.answers import NoSuchTask, record_of
from fleetctl.tasks.connection import Connection
from fleetctl.tasks.marks import mark
from fleetctl.tasks.messages import Result
from fleetctl.tasks.record import Target
from fleetctl.tasks.whereabouts import progress, results_of


@dataclass(frozen=True)
class Cancel:
    """One target of a cancel, and where its copy was when the cancel was asked: a copy
    with no result yet is marked (`asked`); one already final is left as it is."""

    target: Target
    was: Result

    @property
    def asked(self) -> bool:
        return not self.was.final


async def cancel(conn: Connection, task_id: str, to: Sequence[str] = ()) -> list[Cancel]:
    """Mark every target of `task_id` (only those in `to`, when given) that has no result
    yet. Its targets come from its record; without one, `to` names them. NoSuchTask when
    the bus knows nothing of the id; TaskError for a `to` the task was not sent to."""
    record, why = await record_of(conn, task_id)
    if record is not None:
        targets = _chosen(task_id, record.targets, to)
    elif not to:
        if not await results_of(conn, [task_id]):
            raise NoSuchTask(f"no such task: {task_id} (the bus has no record of it and no result)")
        raise taskmsg.TaskError(f"{task_id}: {why}; name the worker to cancel it on with --to ID")
    else:
        targets = [Target(w, taskmsg.dedup_id(task_id, w), 0, False) for w in to]
    states = await progress(conn, [taskrecord.Sent(task_id, tuple(targets))])
    out = [Cancel(t, was) for t, was in zip(targets, states, strict=True)]
    for c in out:
        if c.asked:
            for worker in c.target.workers:
                await mark(conn, worker, task_id)
    return out


def _chosen(task_id: str, targets: Sequence[Target], to: Sequence[str]) -> list[Target]:
    if not to:
        return list(targets)
    unknown = [w for w in to if not any(w in t.workers for t in targets)]
    if unknown:
        names = ", ".join(t.key for t in targets)
        raise taskmsg.TaskError(
            f"{task_id} was not sent to {', '.join(unknown)} (its targets: {names})"
        )
    return [t for t in targets if any(w in t.workers for w in to)]
